// HTTP API gateway (Express platform): forwards /api-gateway/* to the users and
// products TCP microservices through ClientProxy.send.
import 'reflect-metadata';
import {
  type ArgumentsHost,
  Catch,
  Controller,
  Get,
  HttpException,
  Inject,
  Module,
  Param,
  ParseIntPipe,
} from '@nestjs/common';
import { BaseExceptionFilter, HttpAdapterHost, NestFactory } from '@nestjs/core';
import { type ClientProxy, ClientsModule, Transport } from '@nestjs/microservices';
import { firstValueFrom, forkJoin } from 'rxjs';

const USERS_SERVICE = 'USERS_SERVICE';
const PRODUCTS_SERVICE = 'PRODUCTS_SERVICE';

@Controller('api-gateway')
class GatewayController {
  constructor(
    @Inject(USERS_SERVICE) private readonly users: ClientProxy,
    @Inject(PRODUCTS_SERVICE) private readonly products: ClientProxy,
  ) {}

  @Get('users')
  getUsers(): Promise<unknown> {
    return firstValueFrom(this.users.send({ cmd: 'get_users' }, {}));
  }

  @Get('users/:id')
  getUser(@Param('id', ParseIntPipe) id: number): Promise<unknown> {
    return firstValueFrom(this.users.send({ cmd: 'get_user' }, { id }));
  }

  @Get('products')
  getProducts(): Promise<unknown> {
    return firstValueFrom(this.products.send({ cmd: 'get_products' }, {}));
  }

  @Get('products/:id')
  getProduct(@Param('id', ParseIntPipe) id: number): Promise<unknown> {
    return firstValueFrom(this.products.send({ cmd: 'get_product' }, { id }));
  }

  @Get('dashboard')
  getDashboard(): Promise<{ users: unknown; products: unknown }> {
    return firstValueFrom(
      forkJoin({
        users: this.users.send({ cmd: 'get_users' }, {}),
        products: this.products.send({ cmd: 'get_products' }, {}),
      }),
    );
  }
}

// A microservice's RpcException({ status, message }) reaches the client as that
// plain object; turn it into the matching HttpException, leave the rest to Nest.
@Catch()
class RpcToHttpExceptionFilter extends BaseExceptionFilter {
  override catch(exception: unknown, host: ArgumentsHost): void {
    const e = exception as { status?: unknown; message?: unknown } | null;
    if (
      e !== null &&
      typeof e === 'object' &&
      !(e instanceof HttpException) &&
      typeof e.status === 'number' &&
      e.status >= 400 &&
      e.status <= 599
    ) {
      return super.catch(new HttpException(String(e.message ?? ''), e.status), host);
    }
    return super.catch(exception, host);
  }
}

@Module({
  imports: [
    ClientsModule.register([
      {
        name: USERS_SERVICE,
        transport: Transport.TCP,
        options: {
          host: process.env.USERS_HOST ?? '127.0.0.1',
          port: Number(process.env.USERS_PORT ?? 3001),
        },
      },
      {
        name: PRODUCTS_SERVICE,
        transport: Transport.TCP,
        options: {
          host: process.env.PRODUCTS_HOST ?? '127.0.0.1',
          port: Number(process.env.PRODUCTS_PORT ?? 3002),
        },
      },
    ]),
  ],
  controllers: [GatewayController],
})
class GatewayModule {}

async function bootstrap(): Promise<void> {
  const app = await NestFactory.create(GatewayModule, { logger: ['error', 'warn'] });
  app.useGlobalFilters(new RpcToHttpExceptionFilter(app.get(HttpAdapterHost).httpAdapter));
  await app.listen(Number(process.env.PORT ?? 3000), process.env.HOST ?? '127.0.0.1');
}

void bootstrap();
