/** The NATS JetStream backend of sluice's bindings. */
export { NatsBackend, type NatsBackendOptions } from './nats-backend.ts';
