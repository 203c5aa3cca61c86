// Whether a module is the script Node was started with, for modules that are both a command
// (`node dev/token.mjs`) and a library the tests import.
import { realpathSync } from "node:fs";
import { pathToFileURL } from "node:url";

/**
 * `moduleUrl` is `import.meta.url`. Compared as URLs built by pathToFileURL, which escapes
 * spaces and `%` as Node does for `import.meta.url`; through realpath, because Node loads the
 * entry script from its real path while argv[1] keeps a symbolic link as typed.
 */
export function isMainModule(moduleUrl) {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return moduleUrl === pathToFileURL(realpathSync(script)).href;
  } catch {
    // argv[1] is no file (Node found the script by adding an extension): not this module.
    return false;
  }
}
