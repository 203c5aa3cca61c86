// Types for dev/local-stack.mjs, which dev/local-policy.ts imports (the project's tsconfig
// does not type-check JavaScript). Values live in the .mjs only.
export declare const EDGE_PORT: number;
export declare const IDP_PORT: number;
export declare const ORIGIN_PORT: number;
export declare const EDGE_URL: string;
export declare const LOCAL_IDP_URL: string;
export declare const LOCAL_ORIGIN_URL: string;
export declare const LOCAL_ACCESS_TEAM: string;
export declare const LOCAL_AUDIENCE: string;
export declare const ACCESS_AUD: string;
