// Sparklines: small uPlot line charts without axes, cursor or legend.

import uPlot from './vendor/uPlot.esm.js';

// `x` / `y`: optional uPlot scale ranges; `points`: dot size (0: none).
export function sparkline(target, { width, height, stroke, fill = null, x = null, y = null, points = 0 }) {
  return new uPlot({
    width,
    height,
    class: 'spark',
    cursor: { show: false },
    select: { show: false },
    legend: { show: false },
    scales: { x: { time: false, ...(x && { range: x }) }, ...(y && { y: { range: y } }) },
    axes: [{ show: false }, { show: false }],
    series: [{}, { stroke, fill, width: 1.5, points: { show: points > 0, size: points } }],
  }, [[], []], target);
}
