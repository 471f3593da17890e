// The 16 Bundesländer: the ISO 3166-2 code the API stores, and the name people read.

export const STATES = [
  ['DE-BW', 'Baden-Württemberg'], ['DE-BY', 'Bayern'], ['DE-BE', 'Berlin'], ['DE-BB', 'Brandenburg'],
  ['DE-HB', 'Bremen'], ['DE-HH', 'Hamburg'], ['DE-HE', 'Hessen'], ['DE-MV', 'Mecklenburg-Vorpommern'],
  ['DE-NI', 'Niedersachsen'], ['DE-NW', 'Nordrhein-Westfalen'], ['DE-RP', 'Rheinland-Pfalz'],
  ['DE-SL', 'Saarland'], ['DE-SN', 'Sachsen'], ['DE-ST', 'Sachsen-Anhalt'], ['DE-SH', 'Schleswig-Holstein'],
  ['DE-TH', 'Thüringen'],
];

/** "Bayern" for "DE-BY" (an unknown code as it is). */
export function stateName(code) {
  return STATES.find(([c]) => c === code)?.[1] ?? code;
}
