// The shape of a watchlist document as a plain JSON Schema (draft-07), with no custom keywords or
// formats, so it can also be compiled to a standalone validator at build time. What a schema
// cannot say well (CIDR syntax, port ranges, protocol names, rules that can never match) is
// checked in rules.ts, where the messages can name the value.
import Ajv from 'ajv';

export const MAX_RULES = 4096;

const prefixes = {
  type: ['string', 'array'],
  items: { type: 'string' },
  minItems: 1,
} as const;

const ports = {
  type: ['integer', 'string', 'array'],
  items: { type: ['integer', 'string'] },
  minItems: 1,
} as const;

export const watchlistSchema = {
  $id: 'int-host-reporter/watchlist',
  type: 'object',
  additionalProperties: false,
  properties: {
    rules: {
      // `rules:` with nothing after it is null in YAML; the reference reads it as no rules.
      type: ['array', 'null'],
      maxItems: MAX_RULES,
      items: {
        type: 'object',
        additionalProperties: false,
        // The reference calls all three mandatory but only enforces protocol; we enforce the
        // addresses (a rule without one matched nothing there) and let protocol default to any.
        required: ['src-addr', 'dst-addr'],
        properties: {
          name: { type: 'string', minLength: 1, maxLength: 128 },
          protocol: { type: ['string', 'integer'] },
          'src-addr': prefixes,
          'dst-addr': prefixes,
          'src-port': ports,
          'dst-port': ports,
        },
      },
    },
  },
} as const;

const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });

/** The compiled schema check; its `errors` are read by rules.ts. */
export const validateWatchlistShape = ajv.compile(watchlistSchema);
