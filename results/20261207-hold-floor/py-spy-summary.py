"""Self and inclusive shares of a `py-spy record -f raw` file: python py-spy-summary.py FILE."""
import sys, collections
self_, incl = collections.Counter(), collections.Counter()
total = 0
for line in open(sys.argv[1]):
    stack, _, n = line.rstrip().rpartition(' ')
    n = int(n); total += n
    frames = stack.split(';')
    self_[frames[-1]] += n
    for f in set(frames): incl[f] += n
print('total samples', total)
print('--- self')
for f, n in self_.most_common(25): print(f'{n/total:6.1%} {f[:150]}')
print('--- inclusive')
for f, n in incl.most_common(40): print(f'{n/total:6.1%} {f[:150]}')
