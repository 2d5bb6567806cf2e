import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';

/**
 * Row count and content checksum of the shop's orders in a volume's orders.db,
 * read from a copy (db + wal) so that the live copy is never disturbed.
 */
export function ordersDigest(volumeDir: string): { orders: number; items: number; sha256: string } {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'us-digest-'));
  try {
    for (const f of ['orders.db', 'orders.db-wal']) {
      const src = path.join(volumeDir, f);
      if (fs.existsSync(src)) fs.copyFileSync(src, path.join(tmp, f));
    }
    const db = new Database(path.join(tmp, 'orders.db'), { readonly: false });
    try {
      const orders = db.prepare('SELECT id, customer, total_cents, created_at FROM orders ORDER BY id').all();
      const items = db.prepare('SELECT order_id, line, product_id, name, qty, price_cents FROM order_items ORDER BY order_id, line').all();
      const sha256 = crypto
        .createHash('sha256')
        .update(JSON.stringify([orders, items]))
        .digest('hex');
      return { orders: orders.length, items: items.length, sha256 };
    } finally {
      db.close();
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
