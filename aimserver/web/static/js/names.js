// Screen names compare the way AIM compares them: case and spaces do not
// matter ("Bob Smith" is "bobsmith"). The display form is kept separately.

export function normalize(name) {
  return String(name ?? "").replace(/\s+/g, "").toLowerCase();
}

export function sameName(a, b) {
  return normalize(a) === normalize(b);
}
