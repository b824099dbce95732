// The course's Node stack doing the same job, for bench/run.sh: express parses the JSON body,
// the message is {id, data}, published persistent to a durable queue through the default
// exchange on ONE amqplib confirm channel, and the answer is 202 once the broker acks it.
// Settings: AMQP_ADDR, QUEUE, QUEUE_TYPE (classic or quorum), HTTP_ADDR (host:port).
"use strict";

const crypto = require("node:crypto");
const amqp = require("amqplib");
const express = require("express");

const amqpAddr = process.env.AMQP_ADDR || "amqp://guest:guest@127.0.0.1:5672/%2f";
const queue = process.env.QUEUE || "change-of-circumstances";
const [host, port] = (process.env.HTTP_ADDR || "127.0.0.1:8092").split(":");

async function main() {
  const connection = await amqp.connect(amqpAddr);
  const channel = await connection.createConfirmChannel();
  const args = process.env.QUEUE_TYPE === "quorum" ? { "x-queue-type": "quorum" } : {};
  await channel.assertQueue(queue, { durable: true, arguments: args });

  const app = express();
  app.use(express.json());
  app.get("/readyz", (_req, res) => res.sendStatus(200));
  app.post("/api/v1/address-changes", (req, res) => {
    const body = Buffer.from(JSON.stringify({ id: crypto.randomUUID(), data: req.body }));
    channel.sendToQueue(queue, body, { persistent: true }, (error) => {
      res.sendStatus(error ? 503 : 202);
    });
  });
  const server = app.listen(Number(port), host);

  const stop = () => server.close(() => connection.close().finally(() => process.exit(0)));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
