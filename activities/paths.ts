/** Node paths live in common/ (the input validation checks their lengths); re-exported for the steps. */
export { nodePaths } from '../common/paths.js';
