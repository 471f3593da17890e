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
  mic: ['M12 3a3 3 0 0 0-3 3v6a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3z', 'M19 11a7 7 0 0 1-14 0', 'M12 18v3'],
  camera: ['M3 7h12v10H3z', 'M15 10l6-3v10l-6-3'],
  'camera-off': ['M3 7h12v10H3z', 'M15 10l6-3v10l-6-3', 'M2 3l20 18'],
  screen: ['M3 4h18v12H3z', 'M8 20h8', 'M12 16v4', 'M12 13V7', 'M9 10l3-3 3 3'],
  'screen-stop': ['M3 4h18v12H3z', 'M8 20h8', 'M12 16v4', 'M9 7l6 6', 'M15 7l-6 6'],
  chat: ['M4 5h16v11H9l-5 4z'],
  people: [
    'M9 11a3.5 3.5 0 1 0 0-7 3.5 3.5 0 0 0 0 7z',
    'M2.5 20a6.5 6.5 0 0 1 13 0',
    'M16 4.3a3.5 3.5 0 0 1 0 6.4',
    'M18 14a6.5 6.5 0 0 1 3.5 6',
  ],
  leave: ['M10 4H5v16h5', 'M15 8l4 4-4 4', 'M19 12H9'],
  gallery: ['M4 4h7v7H4z', 'M13 4h7v7h-7z', 'M4 13h7v7H4z', 'M13 13h7v7h-7z'],
  speaker: ['M3 4h18v11H3z', 'M3 18h5v2H3z', 'M10 18h4v2h-4z', 'M16 18h5v2h-5z'],
  keyboard: ['M2 6h20v12H2z', 'M6 10h.01', 'M10 10h.01', 'M14 10h.01', 'M18 10h.01', 'M7 14h10'],
  copy: ['M9 9h11v11H9z', 'M5 15H4V4h11v1'],
  door: ['M5 21V3h10v18', 'M15 5h4v16', 'M3 21h18', 'M12 12h.01'],
  stop: ['M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18z', 'M9 9h6v6H9z'],
  'hand-down': [
    'M8 13V5.5a1.5 1.5 0 0 1 3 0V12',
    'M11 11.5V4a1.5 1.5 0 0 1 3 0v7.5',
    'M14 11.5V5.5a1.5 1.5 0 0 1 3 0v7',
    'M17 9.5a1.5 1.5 0 0 1 3 0V15a7 7 0 0 1-7 7h-1a7 7 0 0 1-5.6-2.8L3.5 15.4a1.6 1.6 0 0 1 2.5-2l2 2.1',
    'M2 2l20 20',
  ],
  pin: ['M9 3h6l-1 6 4 4H6l4-4z', 'M12 13v8'],
  more: ['M5 12h.01', 'M12 12h.01', 'M19 12h.01'],
  close: ['M6 6l12 12', 'M18 6L6 18'],
  bell: ['M6 16V11a6 6 0 0 1 12 0v5l2 2H4z', 'M10 21h4'],
  'bell-off': ['M6 16V11a6 6 0 0 1 9.5-4.9', 'M18 11v5l2 2H8', 'M10 21h4', 'M3 3l18 18'],
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
