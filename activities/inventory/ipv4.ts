/** IPv4 arithmetic lives in common/ (the input validation uses it too); re-exported for the ledger's callers. */
export * from '../../common/ipv4.js';
