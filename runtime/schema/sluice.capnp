# The shared-memory hand-off of sluice: ONE message per batch (main thread → handler thread) and
# ONE message with its results (handler thread → main thread), both in a SharedArrayBuffer slot.
#
# Hand-written accessors (runtime/handoff/*.ts) read and write this layout directly; the code
# generated from this file by capnp-es (sluice.generated.ts, see regen.sh) is the REFERENCE the
# tests compare them against. Rules that keep the hand-written code simple and fast:
#   - no field has a non-zero default, so the default-XOR of Cap'n Proto is the identity;
#   - 64-bit integers hold values below 2^53 and are read as lo + hi * 2^32 (no BigInt);
#   - an empty Text / Data / List is written as a null pointer;
#   - Record.source empty means "the batch's source" (records of one batch usually share it).
# Evolve by adding fields at the end only (never renumber); the readers honour the struct sizes
# found in the message, so old messages read as defaults for new fields.
@0xe393b9bc32fe9a33;

enum EventType {
  put @0;
  delete @1;
  attrs @2;
  record @3;
}

struct Batch {
  function @0 :Text;
  source @1 :Text;
  shard @2 :UInt32;
  batchId @3 :Text;
  deadlineMs @4 :Float64;
  records @5 :List(Record);
}

struct Record {
  key @0 :Text;
  type @1 :EventType;
  source @2 :Text;        # empty: the batch's source
  shard @3 :UInt32;
  seq @4 :UInt64;
  version @5 :UInt64;
  size @6 :UInt64;
  mtimeMs @7 :Float64;
  etag @8 :Text;
  contentType @9 :Text;
  attempt @10 :UInt32;
  hasBody @11 :Bool;      # distinguishes an empty inline body from no inline body
  attrs @12 :List(Attr);
  headers @13 :List(Header);
  body @14 :Data;
}

# One attribute. Lists and maps travel msgpack-encoded (bindings/shared.ts `codec`) in `packed`.
struct Attr {
  name @0 :Text;
  value :union {
    null @1 :Void;
    text @2 :Text;
    number @3 :Float64;
    bool @4 :Bool;
    bytes @5 :Data;
    timestampMs @6 :Float64;
    packed @7 :Data;
  }
}

struct Header {
  name @0 :Text;
  value @1 :Text;
}

struct Results {
  records @0 :List(RecordResult);   # in batch order
  counters @1 :List(Counter);
  error @2 :Text;                   # JSON of the batch-level failure; empty when none
}

struct RecordResult {
  set @0 :List(Attr);
  remove @1 :List(Text);
  updates @2 :Data;                 # msgpack of Expression[]; empty when none
  failure @3 :Text;                 # JSON of the record failure; empty when none
  extra @4 :Data;                   # msgpack of ExtraEffect[] (record.effects: KV, stream, other objects); empty when none
}

struct Counter {
  name @0 :Text;
  value @1 :Float64;
}
