/** File binding conformance through each backend's `files(root)`. */
import { forEachBackend } from './backends.ts';
import { fileConformance } from './file.conformance.ts';

forEachBackend('file', (ctx) => {
  fileConformance((root) => ctx.backend.files(root), ctx.name);
});
