// An alert's rule in parts, from the canonical text the pool stores (docs/contract.md, "Alert
// rules"): `[pattern:]type<op><number>[ for <duration>][ clear<op><number>]` or
// `[pattern:]type silent <duration>`. Pure: no DOM, so node can check it too.

const RULE = /^(?:(.+):)?([^:\s<>=]+)(?:\s+silent\s+(\S+)|(>=|<=|>|<)(\S+?)(?:\s+for\s+(\S+))?(?:\s+clear(>=|<=|>|<)(\S+))?)$/;
const NOT = { '>': '≤', '>=': '<', '<': '≥', '<=': '>' };

// {pattern, type, op, threshold, duration, clear, silent} (null where the rule has none), or
// null for a text that is not a rule.
export function ruleParts(text) {
  const match = RULE.exec(String(text ?? '').trim());
  if (!match) return null;
  const [, pattern, type, silent, op, threshold, duration, clearOp, clear] = match;
  return {
    pattern: pattern ?? null,
    type,
    op: op ?? null,
    threshold: threshold ?? null,
    duration: duration ?? null,
    clear: clearOp ? `${clearOp}${clear}` : null,
    silent: silent ?? null,
  };
}

// The labelled parts a table cell shows, in order: [label, value] pairs.
export function ruleLabels(parts) {
  const labels = [['sensors', parts.pattern ?? 'all']];
  if (parts.silent) {
    labels.push(['no data for', parts.silent]);
    labels.push(['clears', 'at the next reading']);
    return labels;
  }
  labels.push(['when', `${parts.type} ${parts.op} ${parts.threshold}`]);
  labels.push(['for', parts.duration ?? 'at once']);
  labels.push(['clears', parts.clear ? `${parts.clear.replace(/^([<>]=?)/, '$1 ')}` : `${NOT[parts.op]} ${parts.threshold}`]);
  return labels;
}

// One sentence, for a tooltip and for screen readers.
export function describeRule(text) {
  const parts = ruleParts(text);
  if (!parts) return String(text ?? '');
  const who = parts.pattern ? `sensors matching ${parts.pattern}` : 'any sensor';
  if (parts.silent) {
    return `Raised when ${who} sends no ${parts.type} reading for ${parts.silent} (wall clock); cleared by its next reading.`;
  }
  const when = parts.duration ? ` continuously for ${parts.duration} (event time)` : '';
  const clears = parts.clear ? `a reading ${parts.clear}` : `the first reading not ${parts.op} ${parts.threshold}`;
  return `Raised when ${parts.type} ${parts.op} ${parts.threshold} on ${who}${when}; cleared by ${clears}.`;
}
