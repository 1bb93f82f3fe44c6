// s3rver as a child process for tests (see s3rver.ts): argv port, directory, buckets to create. A client that is SIGKILLed mid-upload
// resets its socket; s3rver can surface that as an uncaught error and exit, taking the next tests'
// store with it. This entry keeps serving instead and notes the error on stderr.
const S3rver = require('s3rver');

const [port, dir, ...buckets] = process.argv.slice(2);
process.on('uncaughtException', (e) => process.stderr.write(`s3rver: uncaught ${e && e.stack ? e.stack : e}\n`));
process.on('unhandledRejection', (e) => process.stderr.write(`s3rver: unhandled ${e && e.stack ? e.stack : e}\n`));
new S3rver({ port: Number(port), address: '127.0.0.1', directory: dir, silent: true, vhostBuckets: false, configureBuckets: buckets.map((name) => ({ name, configs: [] })) }).run().catch((e) => {
  process.stderr.write(`s3rver: cannot start: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
