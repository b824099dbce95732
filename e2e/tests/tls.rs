//! AMQP over TLS (`amqps://`), against the TLS listener of `e2e/scripts/rabbitmq4.sh`'s node:
//! the services verify the broker's certificate against the system's authorities and
//! `AMQP_CA_FILE`'s, and refuse a broker whose certificate another CA signed.

use e2e::{ServiceConfigs, TestConsumer, TestEnv, TestProducer, change_of_address};
use reqwest::StatusCode;
use shared::{amqp, config::BrokerConfig};
use testkit::tls::TlsListener;

/// The test's broker settings over TLS, trusting `ca`.
fn over_tls(broker: BrokerConfig, tls: &TlsListener, ca: amqp::CaCertificates) -> BrokerConfig {
    BrokerConfig {
        amqp_addr: tls.address(),
        amqp_ca_file: Some(ca),
        ..broker
    }
}

#[tokio::test]
async fn over_amqps_with_the_ca_file_a_posted_change_is_applied() {
    let Some(tls) = TlsListener::from_env() else {
        return;
    };
    let env = TestEnv::new().await;
    let mut producer_config = env.producer_config();
    producer_config.broker = over_tls(producer_config.broker, &tls, tls.ca());
    let mut consumer_config = env.consumer_config();
    consumer_config.broker = over_tls(consumer_config.broker, &tls, tls.ca());
    let producer = TestProducer::start(producer_config).await;
    let consumer = TestConsumer::start(consumer_config).await;

    let response = producer
        .post_change(&change_of_address("C-TLS-1", "PR1 2HE"))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(consumer.shows("C-TLS-1").await["customer_id"], "C-TLS-1");
    producer.stop().await;
    consumer.stop().await;
}

#[tokio::test]
async fn a_broker_certificate_no_trusted_ca_signed_is_refused() {
    let Some(tls) = TlsListener::from_env() else {
        return;
    };
    let trusted = amqp::connect(&tls.address().trusting(tls.ca()), "tls-test").await;
    assert!(trusted.is_ok(), "the test CA is trusted: {trusted:?}");

    for (address, which) in [
        (tls.address(), "the system's authorities only"),
        (
            tls.address().trusting(tls.impostor_ca()),
            "a CA of the same name with another key",
        ),
    ] {
        let error = amqp::connect(&address, "tls-test")
            .await
            .expect_err(which)
            .to_string();
        assert!(
            error.to_lowercase().contains("certificate"),
            "{which}: refused for its certificate, not for another reason: {error}"
        );
    }
}

#[tokio::test]
async fn a_ca_file_is_refused_at_start_unless_it_holds_certificates_and_the_address_is_amqps() {
    let Some(tls) = TlsListener::from_env() else {
        return;
    };
    let env = TestEnv::new().await;
    let plain = BrokerConfig {
        amqp_ca_file: Some(tls.ca()),
        ..env.broker_config()
    };
    let refused = plain.check().expect_err("a CA file with amqp://");
    assert!(
        refused.contains("AMQP_CA_FILE") && refused.contains("amqps://"),
        "{refused}"
    );
    let over_amqps = over_tls(env.broker_config(), &tls, tls.ca());
    assert_eq!(over_amqps.check(), Ok(()));

    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "just text\n").unwrap();
    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    for (path, expected) in [
        (dir.path().join("missing.pem"), "cannot read"),
        (not_pem, "no PEM certificate"),
        (broken, "does not parse"),
    ] {
        let error = amqp::CaCertificates::from_file(path.to_str().unwrap()).unwrap_err();
        assert!(error.contains(expected), "{error}");
        assert!(
            error.contains(path.to_str().unwrap()),
            "names the file: {error}"
        );
    }
}
