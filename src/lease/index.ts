// The lease's public surface.
export {
  Lease,
  defaultOwner,
  type Clock,
  type LeaseOptions,
  type LeaseStatus,
  DEFAULT_NAMESPACE,
  DEFAULT_TTL_SECONDS,
  DEFAULT_MARGIN,
  DEFAULT_POLL_EVERY,
  TTL_GRANULARITY,
} from "./lease.js";
