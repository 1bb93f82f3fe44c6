/**
 * Metadata queries over objects: the row model and `matchesWhere` (fields.ts), the planner (plan.ts)
 * and the pages and tokens (page.ts) every backend shares. docs/QUERIES.md describes the surface.
 */
export {
  canonicalField,
  compareScalars,
  fieldValue,
  indexEntries,
  indexScalar,
  INTERNAL_PREFIX,
  matchesWhere,
  rowOf,
  stateItem,
  type IndexScalar,
  type ObjectState,
} from './fields.ts';
export { PageBuilder, resolveIndexes, resolveQuery, startKey, streamsInKeyOrder, type ResolvedQuery } from './page.ts';
export { inRange, planQuery, type IndexRange, type Plan, type PlanPart } from './plan.ts';
