// Writes install/*.yaml: the default rendering of install/manifests.ts (what
// `int-host-reporter manifests` prints with no options, and uninstall.yaml what it prints with only
// --uninstall). test/unit/install-manifests.test.ts fails when the files and the rendering differ.
//   node --import tsx install/render-manifests.ts
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderFiles } from './manifests';

for (const [file, text] of renderFiles()) {
  writeFileSync(join(__dirname, file), text);
  console.log(`wrote install/${file}`);
}
