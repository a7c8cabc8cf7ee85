// Numbers, sizes, durations and dates as this browser's locale writes them; '–' for a value not known.

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const oneDecimal = new Intl.NumberFormat(undefined, { minimumFractionDigits: 1, maximumFractionDigits: 1 });

export function count(n) {
  return typeof n === 'number' ? integer.format(n) : '–';
}

export function percent(n) {
  return oneDecimal.format(n || 0) + ' %';
}

export function decimal(n) {
  return oneDecimal.format(n);
}

export function bytes(n) {
  if (typeof n !== 'number') return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return (i === 0 ? integer.format(n) : oneDecimal.format(n)) + ' ' + units[i];
}

export function seconds(s) {
  if (typeof s !== 'number' || !isFinite(s)) return '–';
  if (s < 10) return oneDecimal.format(s) + ' s';
  if (s < 90) return integer.format(s) + ' s';
  if (s < 5400) return integer.format(s / 60) + ' min';
  return oneDecimal.format(s / 3600) + ' h';
}

export function when(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString();
}
