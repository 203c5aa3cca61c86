// What the policy validator says of a document: its problems, or none when it compiles.
import { compilePolicy, PolicyError } from "../../src/core/policy";

export function problemsOf(doc: unknown): string[] {
  try {
    compilePolicy(doc);
  } catch (error) {
    if (error instanceof PolicyError) return error.problems;
    throw error;
  }
  return [];
}
