#!/usr/bin/env node
// Committed entry point: it exists before the TypeScript build runs, so npm
// can link the `fbroker` command when the workspace is installed.
void require('../dist/cli/main.js').main(process.argv)
