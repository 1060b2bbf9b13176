// The TypeScript type a JSON schema describes, for the subset of JSON schema the protocol uses
// (object, string, integer, number, boolean, array, enum). The schema is written once, `as const`,
// and its type follows from it, so the validator and the type cannot drift apart.

export type FromSchema<S> =
  S extends { readonly enum: readonly (infer E)[] } ? E
  : S extends { readonly type: 'string' } ? string
  : S extends { readonly type: 'integer' | 'number' } ? number
  : S extends { readonly type: 'boolean' } ? boolean
  : S extends { readonly type: 'array'; readonly items: infer I } ? FromSchema<I>[]
  : S extends { readonly type: 'object'; readonly properties: infer P }
    ? ObjectOf<P, S extends { readonly required: readonly (infer R)[] } ? R : never>
    : never;

type ObjectOf<P, Required> = Flat<
  { -readonly [K in keyof P & Required]: FromSchema<P[K]> } &
  { -readonly [K in Exclude<keyof P, Required>]?: FromSchema<P[K]> }
>;

type Flat<T> = { [K in keyof T]: T[K] };
