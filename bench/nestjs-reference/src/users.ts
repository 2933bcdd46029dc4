// Users microservice: NestJS TCP transport, answers { cmd: 'get_users' } and { cmd: 'get_user' }.
import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  MessagePattern,
  type MicroserviceOptions,
  Payload,
  RpcException,
  Transport,
} from '@nestjs/microservices';

interface User {
  id: number;
  name: string;
  email: string;
}

const USERS: User[] = [
  { id: 1, name: 'Ada Lovelace', email: 'ada@example.com' },
  { id: 2, name: 'Alan Turing', email: 'alan@example.com' },
  { id: 3, name: 'Grace Hopper', email: 'grace@example.com' },
];

@Controller()
class UsersController {
  @MessagePattern({ cmd: 'get_users' })
  getUsers(): User[] {
    return USERS;
  }

  @MessagePattern({ cmd: 'get_user' })
  getUser(@Payload() data: { id: number }): User {
    const user = USERS.find((u) => u.id === Number(data?.id));
    if (!user) {
      throw new RpcException({ status: 404, message: `user ${data?.id} not found` });
    }
    return user;
  }
}

@Module({ controllers: [UsersController] })
class UsersModule {}

async function bootstrap(): Promise<void> {
  const app = await NestFactory.createMicroservice<MicroserviceOptions>(UsersModule, {
    transport: Transport.TCP,
    options: {
      host: process.env.HOST ?? '127.0.0.1',
      port: Number(process.env.USERS_PORT ?? 3001),
    },
    logger: ['error', 'warn'],
  });
  await app.listen();
}

void bootstrap();
