#!/usr/bin/env node
// The package bin: load the TypeScript CLI through tsx, resolved from this
// file (not the caller's cwd), so `nodeboot` works from any directory.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../nodeboot.ts');
main(process.argv.slice(2));
