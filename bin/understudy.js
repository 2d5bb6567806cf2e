#!/usr/bin/env node
// The installed entry point: runs the TypeScript CLI through tsx's loader so that
// `npx understudy …` and `npm start` need no build step.
import { register } from 'tsx/esm/api';
register();
await import('../src/cli/main.ts');
