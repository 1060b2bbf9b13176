#!/usr/bin/env node
// Builds the BPF objects the tests and benchmarks load (test/bpf/*.bpf.c) into build/test-bpf:
// another vendor's program, one the verifier rejects, the cost probes and the benchmark's variant
// of the datapath. The test step runs it (scripts/run-tests.mjs, test/helpers/bpf.ts, the
// benchmarks); the product build (build.mjs) does not. Rebuilds only what is older than its sources.
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileBpfDir } from '../../bpf/compile.mjs';

const here = dirname(fileURLToPath(import.meta.url));
compileBpfDir(here, join(here, '..', '..', 'build', 'test-bpf'));
