// Bounded property-based fuzzing of the server's command handling, in process: parser and engine as one
// connection drives them, with an injected clock and small memory limits.
import { propertyTest } from "./property-test.js";
import { engineProperty } from "./properties.js";

propertyTest(
  "fuzz: the engine answers every request or closes, throws nothing, and keeps its store accounting",
  "engine",
  engineProperty,
  { file: "engine.test.js", pattern: "engine" },
);
