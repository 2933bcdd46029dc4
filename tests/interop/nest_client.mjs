// A real NestJS ClientProxy (TCP transport) run against a users service that
// speaks the NestJS TCP wire: nest_service.mjs, or tern's C++ users service.
//
//   node nest_client.mjs --port N [--host 127.0.0.1]
//   node nest_client.mjs --port N [--host H] --hostile --max-frame BYTES
//
// Prints one line per case, `ok <case>[: detail]` or `FAIL <case>: <detail>`,
// then exits 0 iff every case passed (1 otherwise). Every call is bounded by a
// 5 s rxjs timeout, and a 60 s watchdog exits 1 if anything still hangs.
//
// Normal mode expects a freshly started service (the 3 seeded users; the
// user_created counter may start anywhere). Hostile mode probes a service
// whose frame limit is BYTES (tern's service); NestJS's own limits differ, so
// hostile mode is not expected to pass against nest_service.mjs.
import 'reflect-metadata';
import net from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import { ClientProxyFactory, Transport } from '@nestjs/microservices';
import { firstValueFrom, lastValueFrom, tap, timeout, toArray } from 'rxjs';

const CALL_TIMEOUT_MS = 5000;
const WATCHDOG_MS = 60000;

// ---------------------------------------------------------------- arguments

function usage(message) {
  process.stderr.write(
    `nest_client.mjs: ${message}\n` +
      'usage: node nest_client.mjs --port N [--host H] [--hostile --max-frame BYTES]\n',
  );
  process.exit(2);
}

function parseArgs(argv) {
  const args = { host: '127.0.0.1', port: undefined, hostile: false, maxFrame: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--port') args.port = Number(value());
    else if (a === '--host') args.host = value();
    else if (a === '--hostile') args.hostile = true;
    else if (a === '--max-frame') args.maxFrame = Number(value());
    else usage(`unknown argument ${a}`);
  }
  if (!Number.isInteger(args.port) || args.port <= 0 || args.port > 65535) usage('--port N is required');
  if (args.hostile && (!Number.isInteger(args.maxFrame) || args.maxFrame <= 0)) {
    usage('--hostile needs --max-frame BYTES (a positive integer)');
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));

const watchdog = setTimeout(() => {
  process.stdout.write(`FAIL watchdog: still running after ${WATCHDOG_MS / 1000} s\n`);
  process.exit(1);
}, WATCHDOG_MS);
watchdog.unref();

// ---------------------------------------------------------------- helpers

const SEEDED = [
  { id: 1, name: 'Ada Lovelace', email: 'ada@example.com' },
  { id: 2, name: 'Alan Turing', email: 'alan@example.com' },
  { id: 3, name: 'Grace Hopper', email: 'grace@example.com' },
];
const ADMIN_METADATA = { request_id: 'interop-1', identity: { sub: 'nest-client', roles: ['admin'] } };

class CaseFailure extends Error {}

function fail(detail) {
  throw new CaseFailure(detail);
}

// A readable rendering of any value or error (NestJS rejects with raw values:
// plain objects or strings for remote errors, Error objects for local ones).
function show(value) {
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  if (value === undefined) return 'undefined';
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

function expectEqual(what, actual, expected) {
  if (!isDeepStrictEqual(actual, expected)) {
    fail(`${what}: expected ${show(expected)}, got ${show(actual)}`);
  }
}

function makeClient(hook) {
  const client = ClientProxyFactory.create({
    transport: Transport.TCP,
    options: { host: args.host, port: args.port },
  });
  if (hook) client.setOnDispatchHook(hook);
  return client;
}

// One request/response call, bounded by the call timeout.
function call(client, pattern, data) {
  return firstValueFrom(client.send(pattern, data).pipe(timeout(CALL_TIMEOUT_MS)));
}

// A call that must fail; returns the error value it failed with.
async function callError(client, pattern, data) {
  let value;
  try {
    value = await call(client, pattern, data);
  } catch (err) {
    if (err?.name === 'TimeoutError') fail(`no answer within ${CALL_TIMEOUT_MS} ms`);
    return err;
  }
  fail(`expected an error, got the value ${show(value)}`);
}

const results = [];

async function runCase(name, body) {
  try {
    const detail = await body();
    results.push(true);
    process.stdout.write(`ok ${name}${detail ? `: ${detail}` : ''}\n`);
  } catch (err) {
    results.push(false);
    const detail = err instanceof CaseFailure ? err.message : `unexpected error ${show(err)}`;
    process.stdout.write(`FAIL ${name}: ${detail}\n`);
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------- normal mode

async function normalMode() {
  const client = makeClient();
  const admin = makeClient((packet) => {
    packet.metadata = structuredClone(ADMIN_METADATA);
  });

  await runCase('send', async () => {
    expectEqual('get_user 1', await call(client, { cmd: 'get_user' }, { id: 1 }), SEEDED[0]);
  });

  await runCase('stream', async () => {
    let emissions = 0;
    const all = await firstValueFrom(
      client.send({ cmd: 'stream_users' }, {}).pipe(
        tap(() => emissions++),
        toArray(),
        timeout(CALL_TIMEOUT_MS),
      ),
    );
    expectEqual('stream_users values', all, SEEDED);
    if (emissions !== 3) fail(`expected 3 separate values, got ${emissions}`);
  });

  await runCase('rpc_error', async () => {
    const err = await callError(client, { cmd: 'get_user' }, { id: 999 });
    expectEqual('error value', err, { status: 404, message: 'user 999 not found' });
  });

  await runCase('unknown_pattern', async () => {
    const err = await callError(client, { cmd: 'no_such_cmd' }, {});
    expectEqual('error value', err, 'There is no matching message handler defined in the remote service.');
  });

  await runCase('emit', async () => {
    const before = await call(client, { cmd: 'health' }, {});
    const n0 = Number(before?.user_created_events);
    if (before?.status !== 'ok' || !Number.isInteger(n0)) fail(`bad health answer ${show(before)}`);
    await lastValueFrom(
      client
        .emit('user_created', { id: 99, name: 'Event', email: 'event@example.com' })
        .pipe(timeout(CALL_TIMEOUT_MS)),
      { defaultValue: undefined },
    );
    const want = String(n0 + 1);
    const deadline = Date.now() + CALL_TIMEOUT_MS;
    let last = before.user_created_events;
    while (Date.now() < deadline) {
      last = (await call(client, { cmd: 'health' }, {}))?.user_created_events;
      if (last === want) return `user_created_events ${before.user_created_events} -> ${last}`;
      await sleep(20);
    }
    fail(`user_created_events stayed ${show(last)}, expected ${show(want)}`);
  });

  await runCase('forbidden', async () => {
    const err = await callError(client, { cmd: 'create_user' }, { name: 'Nobody', email: 'nobody@example.com' });
    expectEqual('error value', err, { status: 403, message: 'create_user needs an admin identity' });
  });

  await runCase('metadata', async () => {
    expectEqual('whoami', await call(admin, { cmd: 'whoami' }, {}), {
      sub: 'nest-client',
      roles: ['admin'],
      claims: {},
    });
  });

  const createAndRead = async (name, email) => {
    const created = await call(admin, { cmd: 'create_user' }, { name, email });
    if (typeof created?.id !== 'number') fail(`create_user gave no numeric id: ${show(created)}`);
    if (created.name !== name) fail(`create_user echoed name ${show(created.name)}, expected ${show(name)}`);
    if (created.email !== email) fail(`create_user echoed email ${show(created.email)}, expected ${show(email)}`);
    const read = await call(client, { cmd: 'get_user' }, { id: created.id });
    expectEqual(`get_user ${created.id}`, read, { id: created.id, name, email });
    return `id ${created.id}`;
  };

  await runCase('non_ascii', () => createAndRead('Zoë Ωmega — ñ', 'zoe@example.com'));
  await runCase('astral', () => createAndRead('Astral 😀𝄞 emoji', 'astral@example.com'));

  await runCase('concurrent', async () => {
    const n = 1000;
    const answers = await Promise.all(
      Array.from({ length: n }, (_, i) => call(client, { cmd: 'get_user' }, { id: (i % 3) + 1 })),
    );
    const wrong = answers.findIndex((u, i) => !isDeepStrictEqual(u, SEEDED[i % 3]));
    if (wrong >= 0) fail(`call ${wrong}: expected ${show(SEEDED[wrong % 3])}, got ${show(answers[wrong])}`);
    return `${n} calls`;
  });

  client.close();
  admin.close();
}

// ---------------------------------------------------------------- hostile mode

function frame(obj) {
  const json = JSON.stringify(obj);
  return `${json.length}#${json}`; // length in UTF-16 code units, as NestJS does
}

// Opens a raw socket, writes `chunks` (strings or Buffers, one write each,
// with a setImmediate pause between writes), and resolves once the socket
// closes, a reply frame with id `waitForId` arrives, or `ms` elapses.
// Reply frames (`<len>#<json>`, len in UTF-16 units) are parsed as they come.
function rawExchange(chunks, { waitForId, ms = CALL_TIMEOUT_MS } = {}) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: args.host, port: args.port });
    const state = { closed: false, error: undefined, raw: '', frames: [], parseError: undefined, reply: undefined };
    let buffer = '';
    let done = false;
    const finish = (how) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ ...state, how });
    };
    const timer = setTimeout(() => finish('timeout'), ms);
    socket.setEncoding('utf8'); // streaming UTF-8 decoder: split sequences are safe
    socket.on('data', (text) => {
      state.raw += text;
      buffer += text;
      for (;;) {
        const hash = buffer.indexOf('#');
        if (hash < 0) break;
        const len = Number(buffer.slice(0, hash));
        if (!/^\d+$/.test(buffer.slice(0, hash)) || !Number.isSafeInteger(len)) {
          state.parseError = `bad length prefix ${show(buffer.slice(0, Math.min(hash, 40)))}`;
          buffer = '';
          break;
        }
        if (buffer.length - hash - 1 < len) break;
        const json = buffer.slice(hash + 1, hash + 1 + len);
        buffer = buffer.slice(hash + 1 + len);
        let packet;
        try {
          packet = JSON.parse(json);
        } catch {
          state.parseError = `reply is not JSON: ${show(json.slice(0, 200))}`;
          continue;
        }
        state.frames.push(packet);
        if (waitForId !== undefined && packet?.id === waitForId) {
          state.reply = packet;
          finish('reply');
        }
      }
    });
    socket.on('error', (err) => {
      state.error = err;
    });
    socket.on('close', () => {
      state.closed = true;
      finish('close');
    });
    socket.on('connect', async () => {
      for (let i = 0; i < chunks.length && !done; i++) {
        if (i > 0) await new Promise((r) => setImmediate(r));
        if (!done) socket.write(chunks[i]);
      }
    });
  });
}

async function hostileMode() {
  const maxFrame = args.maxFrame;
  const good = makeClient();
  const big = makeClient();

  const goodStillAnswers = async () => {
    let user;
    try {
      user = await call(good, { cmd: 'get_user' }, { id: 2 });
    } catch (err) {
      fail(`the good client no longer answers: ${show(err)}`);
    }
    expectEqual('good client get_user 2', user, SEEDED[1]);
  };

  // Expect the server to close the raw socket without sending anything.
  const expectSilentClose = async (payload) => {
    const r = await rawExchange([payload]);
    if (r.how === 'timeout') fail(`socket still open after ${CALL_TIMEOUT_MS} ms`);
    if (r.raw.length > 0) fail(`server sent ${show(r.raw.slice(0, 200))} before closing`);
    await goodStillAnswers();
    return r.error ? `closed (${r.error.code ?? r.error.message})` : 'closed';
  };

  await runCase('connect', async () => {
    expectEqual('good client get_user 1', await call(good, { cmd: 'get_user' }, { id: 1 }), SEEDED[0]);
  });

  await runCase('garbage_prefix', () => expectSilentClose('abc#{"pattern":"x","data":1,"id":"1"}'));
  await runCase('bad_json', () => expectSilentClose('5#{abc}'));
  await runCase('oversized_announced', () => expectSilentClose(`${maxFrame * 4}#{`));

  await runCase('oversized_payload', async () => {
    const err = await callError(big, { cmd: 'get_user' }, { id: 1, pad: 'x'.repeat(maxFrame + 1) });
    const grace = await call(big, { cmd: 'get_user' }, { id: 3 }).catch((e) =>
      fail(`the same client did not recover: ${show(e)}`),
    );
    expectEqual('same client get_user 3', grace, SEEDED[2]);
    await goodStillAnswers();
    return `error ${show(err)}`;
  });

  await runCase('deep_json', async () => {
    const depth = 200;
    const data = JSON.parse('['.repeat(depth) + '1' + ']'.repeat(depth));
    const r = await rawExchange([frame({ pattern: { cmd: 'get_user' }, data, id: 'deep-1' })], {
      waitForId: 'deep-1',
    });
    if (r.how === 'close') {
      fail(`server closed the connection instead of answering id deep-1 with an error${r.parseError ? ` (${r.parseError})` : ''}`);
    }
    if (r.how === 'timeout') fail(`no reply for id deep-1 within ${CALL_TIMEOUT_MS} ms${r.parseError ? ` (${r.parseError})` : ''}`);
    if (r.reply.err === undefined) fail(`reply for deep-1 has no err: ${show(r.reply)}`);
    const others = r.frames.filter((f) => f?.id !== 'deep-1');
    if (others.length) fail(`unexpected extra frames ${show(others)}`);
    await goodStillAnswers();
    return `err ${show(r.reply.err)}`;
  });

  await runCase('split_utf8', async () => {
    const text = frame({ pattern: { cmd: 'get_user' }, data: { id: 1, note: 'é😀' }, id: 'split-1' });
    const bytes = Buffer.from(text, 'utf8');
    const chunks = Array.from(bytes, (b) => Buffer.from([b]));
    const r = await rawExchange(chunks, { waitForId: 'split-1' });
    if (r.how !== 'reply') {
      fail(`no reply for id split-1 (${r.how}${r.parseError ? `, ${r.parseError}` : ''})`);
    }
    if (r.reply.err !== undefined) fail(`error reply ${show(r.reply)}`);
    expectEqual('split-1 response', r.reply.response, SEEDED[0]);
    await goodStillAnswers();
    return `${bytes.length} one-byte writes`;
  });

  good.close();
  big.close();
}

// ---------------------------------------------------------------- main

try {
  if (args.hostile) await hostileMode();
  else await normalMode();
} catch (err) {
  results.push(false);
  process.stdout.write(`FAIL internal: ${show(err)}\n`);
}
const failed = results.filter((r) => !r).length;
process.exit(failed === 0 && results.length > 0 ? 0 : 1);
