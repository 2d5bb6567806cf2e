import type { RenderedRule } from '../transform/render-rules.ts';
import type { ReaderShippingStatus, TransformResponse } from '../shared/contracts.ts';
import type { PartClients } from './clients.ts';

/** Typed calls from the controller to the storage processors about reader copies (contracts.ts). */
export class ReaderClients {
  constructor(private readonly clients: PartClients) {}

  /** The primary's storage starts feeding a reader copy on `to` (idempotent). */
  startShipping(primaryStorage: string, site: string, epoch: number, to: string): Promise<ReaderShippingStatus[]> {
    return this.clients.call(`${this.clients.storageUrl(primaryStorage)}/v1/volumes/${site}/readers`, {
      body: { epoch, to: { name: to, url: this.clients.storageUrl(to) } },
      timeoutMs: 10_000,
    });
  }

  stopShipping(primaryStorage: string, site: string, to: string): Promise<unknown> {
    return this.clients.call(`${this.clients.storageUrl(primaryStorage)}/v1/volumes/${site}/readers/stop`, { body: { to }, timeoutMs: 5000 });
  }

  /** Resolves once the reader copy on `to` serves everything committed before the call. */
  catchUp(primaryStorage: string, site: string, to: string, timeoutMs: number): Promise<unknown> {
    return this.clients.call(`${this.clients.storageUrl(primaryStorage)}/v1/volumes/${site}/readers/catch-up`, {
      body: { timeoutMs, to },
      timeoutMs: timeoutMs + 2000,
    });
  }

  transform(readerStorage: string, site: string, epoch: number, rules: RenderedRule[]): Promise<TransformResponse> {
    return this.clients.call(`${this.clients.storageUrl(readerStorage)}/v1/readers/${site}/transform`, { body: { epoch, rules }, timeoutMs: 10_000 });
  }

  drop(readerStorage: string, site: string, epoch: number): Promise<unknown> {
    return this.clients.call(`${this.clients.storageUrl(readerStorage)}/v1/readers/${site}/drop`, { body: { epoch }, timeoutMs: 10_000 });
  }
}
