// Icons as inline SVG shipped with the page: emoji show as a box where no emoji font is
// installed (many school computers), and nothing is loaded from elsewhere.

const NS = 'http://www.w3.org/2000/svg';

// 24×24 outlines, stroked with the text colour.
const PATHS = {
  'mic-off': [
    'M9 9v3a3 3 0 0 0 5.1 2.1',
    'M15 9.3V5a3 3 0 0 0-5.9-.8',
    'M19 11a7 7 0 0 1-1.2 3.9',
    'M5 11a7 7 0 0 0 11.5 5.4',
    'M12 18v3',
    'M3 3l18 18',
  ],
  hand: [
    'M8 13V5.5a1.5 1.5 0 0 1 3 0V12',
    'M11 11.5V4a1.5 1.5 0 0 1 3 0v7.5',
    'M14 11.5V5.5a1.5 1.5 0 0 1 3 0v7',
    'M17 9.5a1.5 1.5 0 0 1 3 0V15a7 7 0 0 1-7 7h-1a7 7 0 0 1-5.6-2.8L3.5 15.4a1.6 1.6 0 0 1 2.5-2l2 2.1',
  ],
  expand: ['M4 9V4h5', 'M15 4h5v5', 'M20 15v5h-5', 'M9 20H4v-5'],
};

/** An icon with a text alternative (`label`), or decorative when `label` is empty. */
export function icon(name, label = '') {
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', `icon icon-${name}`);
  svg.setAttribute('fill', 'none');
  svg.setAttribute('stroke', 'currentColor');
  svg.setAttribute('stroke-width', '2');
  svg.setAttribute('stroke-linecap', 'round');
  svg.setAttribute('stroke-linejoin', 'round');
  svg.dataset.icon = name;
  if (label) {
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', label);
    const title = document.createElementNS(NS, 'title');
    title.textContent = label;
    svg.append(title);
  } else {
    svg.setAttribute('aria-hidden', 'true');
  }
  for (const d of PATHS[name] || []) {
    const path = document.createElementNS(NS, 'path');
    path.setAttribute('d', d);
    svg.append(path);
  }
  return svg;
}
