// A real NestJS TCP microservice (plain ESM JavaScript, no TypeScript, no build
// step) that mirrors tern's demo users service, so that the same client cases
// (nest_client.mjs, or tern's C++ client tests) run against both.
//
//   PORT=47123 [HOST=127.0.0.1] node nest_service.mjs   (PORT=0 picks a free port)
//
// Prints exactly one line, `READY <port>`, to stdout once app.listen() has
// resolved (the convention of tern's test processes). Logs only errors and warnings (to stderr/stdout
// through the Nest logger).
//
// Decorators are applied by hand, as the TypeScript compiler would with
// "experimentalDecorators": Reflect.decorate for class and method decorators,
// and a direct call for parameter decorators (what TypeScript's __param helper
// does).
import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  Ctx,
  EventPattern,
  MessagePattern,
  Payload,
  RpcException,
  Transport,
} from '@nestjs/microservices';
import { concat, from, of, throwError } from 'rxjs';

const HOST = process.env.HOST || '127.0.0.1';
const PORT = Number(process.env.PORT);
if (!process.env.PORT || !Number.isInteger(PORT) || PORT < 0 || PORT > 65535) {
  process.stderr.write('nest_service.mjs: set PORT to a TCP port (0-65535, 0: a free one)\n');
  process.exit(2);
}

// Apply decorators to one method: method decorators (e.g. MessagePattern) and
// parameter decorators given as [index, decorator] pairs. Same order as
// TypeScript's emitted code: parameter decorators run first, then the method
// decorators bottom-up (Reflect.decorate handles that order).
function decorateMethod(cls, name, methodDecorators, paramDecorators = []) {
  const proto = cls.prototype;
  const params = paramDecorators.map(
    ([index, decorator]) => (target, key) => decorator(target, key, index),
  );
  const descriptor = Object.getOwnPropertyDescriptor(proto, name);
  const result = Reflect.decorate([...methodDecorators, ...params], proto, name, descriptor);
  Object.defineProperty(proto, name, result ?? descriptor);
}

const users = [
  { id: 1, name: 'Ada Lovelace', email: 'ada@example.com' },
  { id: 2, name: 'Alan Turing', email: 'alan@example.com' },
  { id: 3, name: 'Grace Hopper', email: 'grace@example.com' },
];
let nextId = 4;
let userCreatedEvents = 0;

class UsersController {
  getUsers(data) {
    const offset = Number(data?.offset ?? 0);
    const limit = data?.limit === undefined || data?.limit === null ? undefined : Number(data.limit);
    return limit === undefined ? users.slice(offset) : users.slice(offset, offset + limit);
  }

  getUser(data) {
    const id = data?.id;
    const user = users.find((u) => u.id === Number(id));
    if (!user) {
      throw new RpcException({ status: 404, message: `user ${id} not found` });
    }
    return user;
  }

  createUser(data, ctx) {
    const metadata = ctx.getMetadata();
    const roles = metadata?.identity?.roles ?? [];
    if (!Array.isArray(roles) || !roles.includes('admin')) {
      throw new RpcException({ status: 403, message: 'create_user needs an admin identity' });
    }
    const user = { id: nextId++, name: data?.name, email: data?.email };
    users.push(user);
    return user;
  }

  whoami(ctx) {
    const identity = ctx.getMetadata()?.identity;
    if (!identity) {
      throw new RpcException({ status: 401, message: 'whoami needs an identity' });
    }
    return { sub: identity.sub, roles: identity.roles ?? [], claims: {} };
  }

  onUserCreated() {
    userCreatedEvents += 1;
  }

  health() {
    return { status: 'ok', user_created_events: String(userCreatedEvents) };
  }

  streamUsers() {
    // One response frame per user (the last one carries isDisposed).
    return from(users.map((u) => ({ ...u })));
  }

  // --- extra patterns for the C++ client's tests ---
  echo(data) {
    return data;
  }

  metadata(ctx) {
    return ctx.getMetadata() ?? null;
  }

  fail() {
    throw new RpcException('Invalid input');
  }

  failObj() {
    throw new RpcException({ code: 'E_BAD', message: 'bad thing', details: [1, 2] });
  }

  boom() {
    throw new Error('secret');
  }

  streamFail() {
    return concat(of(0), throwError(() => new RpcException('mid-stream')));
  }
}

decorateMethod(UsersController, 'getUsers', [MessagePattern({ cmd: 'get_users' })], [[0, Payload()]]);
decorateMethod(UsersController, 'getUser', [MessagePattern({ cmd: 'get_user' })], [[0, Payload()]]);
decorateMethod(UsersController, 'createUser', [MessagePattern({ cmd: 'create_user' })], [
  [0, Payload()],
  [1, Ctx()],
]);
decorateMethod(UsersController, 'whoami', [MessagePattern({ cmd: 'whoami' })], [[0, Ctx()]]);
decorateMethod(UsersController, 'onUserCreated', [EventPattern('user_created')], [[0, Payload()]]);
decorateMethod(UsersController, 'health', [MessagePattern({ cmd: 'health' })]);
decorateMethod(UsersController, 'streamUsers', [MessagePattern({ cmd: 'stream_users' })]);
decorateMethod(UsersController, 'echo', [MessagePattern({ cmd: 'echo' })], [[0, Payload()]]);
decorateMethod(UsersController, 'metadata', [MessagePattern({ cmd: 'metadata' })], [[0, Ctx()]]);
decorateMethod(UsersController, 'fail', [MessagePattern('fail')]);
decorateMethod(UsersController, 'failObj', [MessagePattern('fail_obj')]);
decorateMethod(UsersController, 'boom', [MessagePattern('boom')]);
decorateMethod(UsersController, 'streamFail', [MessagePattern({ cmd: 'stream_fail' })]);
Reflect.decorate([Controller()], UsersController);

class UsersModule {}
Reflect.decorate([Module({ controllers: [UsersController] })], UsersModule);

async function bootstrap() {
  const app = await NestFactory.createMicroservice(UsersModule, {
    transport: Transport.TCP,
    options: { host: HOST, port: PORT },
    logger: ['error', 'warn'],
  });
  await app.listen();
  process.stdout.write(`READY ${app.unwrap().address().port}\n`);
}

bootstrap().catch((err) => {
  process.stderr.write(`nest_service.mjs: ${err?.stack ?? err}\n`);
  process.exit(1);
});
