import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { DirectoryWatch } from '../../../src/storage/dir-watch.ts';
import { tempDir, waitFor } from './helpers.ts';

test('directory watch: changes in every directory are reported, directories created later after refresh, temp directories never', async (t) => {
  const root = tempDir();
  fs.mkdirSync(path.join(root, 'public', 'img'), { recursive: true });
  const seen: string[] = [];
  const w = new DirectoryWatch(root, (rel) => {
    if (rel) seen.push(rel);
  });
  t.after(() => {
    w.close();
    fs.rmSync(root, { recursive: true, force: true });
  });
  w.refresh();
  fs.writeFileSync(path.join(root, 'public', 'img', 'a.png'), 'x');
  fs.writeFileSync(path.join(root, 'top.txt'), 'x');
  await waitFor('nested and top-level changes', () => seen.includes('public/img/a.png') && seen.includes('top.txt'));
  fs.mkdirSync(path.join(root, 'config'));
  fs.mkdirSync(path.join(root, '.understudy-tmp-x'));
  w.refresh();
  fs.writeFileSync(path.join(root, 'config', 'site.json'), '{}');
  fs.writeFileSync(path.join(root, '.understudy-tmp-x', 'f'), 'x');
  await waitFor('a directory created later', () => seen.includes('config/site.json'));
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(!seen.some((s) => s.startsWith('.understudy-tmp-x/')), 'temp directories are not watched');
  fs.rmSync(path.join(root, 'config'), { recursive: true });
  w.refresh(); // a directory gone: its watcher is dropped without error
  w.close();
  const n = seen.length;
  fs.writeFileSync(path.join(root, 'top.txt'), 'y');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(seen.length, n, 'closed: no more reports');
});
