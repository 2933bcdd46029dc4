// Products microservice: NestJS TCP transport, answers { cmd: 'get_products' } and { cmd: 'get_product' }.
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

interface Product {
  id: number;
  name: string;
  price: number;
}

const PRODUCTS: Product[] = [
  { id: 1, name: 'Analytical Engine', price: 1843 },
  { id: 2, name: 'Bombe', price: 1939.5 },
  { id: 3, name: 'UNIVAC I', price: 1951.25 },
];

@Controller()
class ProductsController {
  @MessagePattern({ cmd: 'get_products' })
  getProducts(): Product[] {
    return PRODUCTS;
  }

  @MessagePattern({ cmd: 'get_product' })
  getProduct(@Payload() data: { id: number }): Product {
    const product = PRODUCTS.find((p) => p.id === Number(data?.id));
    if (!product) {
      throw new RpcException({ status: 404, message: `product ${data?.id} not found` });
    }
    return product;
  }
}

@Module({ controllers: [ProductsController] })
class ProductsModule {}

async function bootstrap(): Promise<void> {
  const app = await NestFactory.createMicroservice<MicroserviceOptions>(ProductsModule, {
    transport: Transport.TCP,
    options: {
      host: process.env.HOST ?? '127.0.0.1',
      port: Number(process.env.PRODUCTS_PORT ?? 3002),
    },
    logger: ['error', 'warn'],
  });
  await app.listen();
}

void bootstrap();
