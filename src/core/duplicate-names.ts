// Finds member names written twice in one object of a JSON text, which JSON.parse lets pass: the last one wins.

/**
 * The path of member `name` of the object at `parent` (none: the top level), as the policy
 * validator writes paths: `issuers.demo`, `routes`. A name that would not read back from such
 * a path (a dot, a space, nothing at all) is quoted: `issuers["a.b"]`.
 */
function memberPath(parent: string | undefined, name: string): string {
  if (!/^[\w$-]+$/.test(name)) return `${parent ?? ""}[${JSON.stringify(name)}]`;
  return parent === undefined ? name : `${parent}.${name}`;
}

interface ObjectScope {
  kind: "object";
  /** Where the object opens: problems are listed in the order their objects open. */
  start: number;
  path: string;
  /** How often each name (decoded: `"a"` and `"\u0061"` are one name) appeared, in order of first appearance. */
  names: Map<string, number>;
  /** Whether the next string is a member name (just after `{` or `,`) rather than a value. */
  expectingName: boolean;
  /** The name of the member whose value comes next. */
  current: string;
}

interface ArrayScope {
  kind: "array";
  path: string;
  index: number;
}

/**
 * The path of the value that starts now inside `scope`: `root` at the top level, and the top
 * level's members by their names alone (`routes[3]`, not `policy.routes[3]`).
 */
function childPath(scope: ObjectScope | ArrayScope | undefined, depth: number, root: string): string {
  if (!scope) return root;
  if (scope.kind === "array") return `${scope.path}[${scope.index}]`;
  return memberPath(depth === 1 ? undefined : scope.path, scope.current);
}

function problemsOf(scope: ObjectScope): string[] {
  const problems: string[] = [];
  for (const [name, count] of scope.names) {
    if (count < 2) continue;
    problems.push(`${scope.path}: ${JSON.stringify(name)} appears ${count === 2 ? "twice" : `${count} times`}`);
  }
  return problems;
}

/**
 * Each name that appears more than once in one object of `text`, as `PATH: "NAME" appears
 * twice`, in the order the objects open, then of the names' first appearance. PATH is written
 * as the policy validator writes it (`routes[3]`, `issuers.demo`), the top-level value being
 * `root` (the policy itself unless named). `text` must be JSON that JSON.parse accepts (parse it first: syntax errors are not
 * reported here). Iterative, so no depth of nesting overflows the stack.
 */
export function duplicateNames(text: string, root = "policy"): string[] {
  const found: { start: number; problems: string[] }[] = [];
  const stack: (ObjectScope | ArrayScope)[] = [];
  let at = 0;
  while (at < text.length) {
    const char = text[at];
    const scope = stack[stack.length - 1];
    if (char === '"') {
      // The closing quote is the first one not escaped: a backslash escapes exactly the next
      // character, so `\\"` ends the string and `\"` does not.
      let end = at + 1;
      let escaped = false;
      while (end < text.length && text[end] !== '"') {
        escaped ||= text[end] === "\\";
        end += text[end] === "\\" ? 2 : 1;
      }
      if (scope?.kind === "object" && scope.expectingName) {
        // Decoded as JSON.parse decodes it, so that escapes name the same member as the plain text.
        const name = escaped ? (JSON.parse(text.slice(at, end + 1)) as string) : text.slice(at + 1, end);
        scope.names.set(name, (scope.names.get(name) ?? 0) + 1);
        scope.current = name;
        scope.expectingName = false;
      }
      at = end + 1;
      continue;
    }
    if (char === "{" || char === "[") {
      const path = childPath(scope, stack.length, root);
      stack.push(
        char === "{"
          ? { kind: "object", start: at, path, names: new Map(), expectingName: true, current: "" }
          : { kind: "array", path, index: 0 },
      );
    } else if (char === "}" || char === "]") {
      const closed = stack.pop();
      if (closed?.kind === "object") {
        const problems = problemsOf(closed);
        if (problems.length > 0) found.push({ start: closed.start, problems });
      }
    } else if (char === ",") {
      if (scope?.kind === "object") scope.expectingName = true;
      else if (scope?.kind === "array") scope.index += 1;
    }
    // Anything else is white space, `:`, or part of a number or literal: nothing to track.
    at += 1;
  }
  return found.sort((a, b) => a.start - b.start).flatMap((object) => object.problems);
}
