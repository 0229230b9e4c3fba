// Bounded property-based fuzzing of the codec (a few seconds per property; MEMIPC_FUZZ_PROPERTY_SECONDS
// changes it, MEMIPC_FUZZ_PROPERTY_SEED and MEMIPC_FUZZ_PROPERTY_PATH replay a reported failure).
import { propertyTest } from "./property-test.js";
import { replyParserProperty, requestParserProperty } from "./properties.js";

propertyTest(
  "fuzz: the request parser yields typed frames only, the same under any split, with bounded buffering",
  "request-parser",
  requestParserProperty,
  { file: "codec.test.js", pattern: "request parser" },
);

propertyTest(
  "fuzz: the reply parser yields frames or a ProtocolError, the same under any split, with a bounded line buffer",
  "reply-parser",
  replyParserProperty,
  { file: "codec.test.js", pattern: "reply parser" },
);
