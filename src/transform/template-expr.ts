/**
 * The expression inside a template's `{{ }}`: a name (`host.profile.cpus`), or
 * arithmetic on numbers: `+ - * /`, parentheses, number literals, `min(…)`, `max(…)`.
 *
 *   expr    := term (('+' | '-') term)*
 *   term    := unary (('*' | '/') unary)*
 *   unary   := '-' unary | primary
 *   primary := number | name | ('min' | 'max') '(' expr (',' expr)* ')' | '(' expr ')'
 *   name    := word ('.' word)*      word: letters, digits, _ and inner -
 *
 * A lone name evaluates to its value as it is (any type); anything else to a whole
 * number, rounded down (see `roundDown`).
 */

export type Expr =
  | { kind: 'num'; value: number }
  | { kind: 'ref'; name: string }
  | { kind: 'neg'; arg: Expr }
  | { kind: 'bin'; op: '+' | '-' | '*' | '/'; left: Expr; right: Expr }
  | { kind: 'call'; fn: 'min' | 'max'; args: Expr[] };

const FUNCTIONS = ['min', 'max'] as const;

type Token = { t: 'num'; v: number; at: number } | { t: 'name'; v: string; at: number } | { t: 'op'; v: string; at: number };

const NAME = /[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*(?:\.[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*)*/y;
const NUMBER = /(?:\d+(?:\.\d+)?|\.\d+)/y;

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i] as string;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    NUMBER.lastIndex = i;
    const num = NUMBER.exec(src);
    if (num) {
      out.push({ t: 'num', v: Number(num[0]), at: i });
      i += num[0].length;
      continue;
    }
    NAME.lastIndex = i;
    const name = NAME.exec(src);
    if (name) {
      out.push({ t: 'name', v: name[0], at: i });
      i += name[0].length;
      continue;
    }
    if ('+-*/(),'.includes(c)) {
      out.push({ t: 'op', v: c, at: i });
      i++;
      continue;
    }
    throw new Error(`unexpected "${c}" at column ${i + 1}; use names, numbers, + - * /, ( ), min() and max()`);
  }
  return out;
}

/** Parses the text between `{{` and `}}`; throws an Error saying what is wrong. */
export function parseExpression(src: string): Expr {
  if (src.trim() === '') throw new Error('empty placeholder');
  const tokens = tokenize(src);
  let pos = 0;
  const peek = (): Token | undefined => tokens[pos];
  const isOp = (v: string): boolean => {
    const t = peek();
    return t !== undefined && t.t === 'op' && t.v === v;
  };
  const expect = (v: string): void => {
    if (!isOp(v)) throw new Error(`expected "${v}" ${where()}`);
    pos++;
  };
  const where = (): string => {
    const t = peek();
    return t === undefined ? 'at the end' : `at column ${t.at + 1}`;
  };

  const expr = (): Expr => {
    let left = term();
    while (isOp('+') || isOp('-')) {
      const op = (tokens[pos++] as Token).v as '+' | '-';
      left = { kind: 'bin', op, left, right: term() };
    }
    return left;
  };
  const term = (): Expr => {
    let left = unary();
    while (isOp('*') || isOp('/')) {
      const op = (tokens[pos++] as Token).v as '*' | '/';
      left = { kind: 'bin', op, left, right: unary() };
    }
    return left;
  };
  const unary = (): Expr => {
    if (isOp('-')) {
      pos++;
      return { kind: 'neg', arg: unary() };
    }
    return primary();
  };
  const primary = (): Expr => {
    const t = peek();
    if (t === undefined) throw new Error('expected a name or a number at the end');
    if (t.t === 'num') {
      pos++;
      return { kind: 'num', value: t.v };
    }
    if (t.t === 'name') {
      pos++;
      if (!isOp('(')) return { kind: 'ref', name: t.v };
      const fn = FUNCTIONS.find((f) => f === t.v);
      if (fn === undefined) throw new Error(`unknown function ${t.v}(); known: ${FUNCTIONS.map((f) => `${f}()`).join(', ')}`);
      pos++;
      const args = [expr()];
      while (isOp(',')) {
        pos++;
        args.push(expr());
      }
      expect(')');
      return { kind: 'call', fn, args };
    }
    if (t.v === '(') {
      pos++;
      const inner = expr();
      expect(')');
      return inner;
    }
    throw new Error(`unexpected "${t.v}" at column ${t.at + 1}`);
  };

  const result = expr();
  if (pos < tokens.length) throw new Error(`unexpected "${String((tokens[pos] as Token).v)}" ${where()}`);
  return result;
}

/** Every name an expression refers to, in order. */
export function refsOf(e: Expr): string[] {
  switch (e.kind) {
    case 'num':
      return [];
    case 'ref':
      return [e.name];
    case 'neg':
      return refsOf(e.arg);
    case 'bin':
      return [...refsOf(e.left), ...refsOf(e.right)];
    case 'call':
      return e.args.flatMap(refsOf);
  }
}

/**
 * Evaluates an expression; `lookup` gives a name's value (and throws for an unknown
 * one). A lone name gives its value unchanged; arithmetic gives a whole number.
 */
export function evaluate(e: Expr, lookup: (name: string) => unknown): unknown {
  if (e.kind === 'ref') return lookup(e.name);
  const value = roundDown(calc(e, lookup));
  if (!Number.isFinite(value)) throw new Error('the result is not a finite number');
  return value;
}

/** Rounds down to a whole number, after rounding to a millionth (0.29 * 100 = 28.999999999999996 → 29). */
export function roundDown(x: number): number {
  const r = Math.floor(Math.round(x * 1e6) / 1e6);
  return Object.is(r, -0) ? 0 : r;
}

function calc(e: Expr, lookup: (name: string) => unknown): number {
  switch (e.kind) {
    case 'num':
      return e.value;
    case 'ref': {
      const v = lookup(e.name);
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${e.name} is ${JSON.stringify(v) ?? String(v)}, not a number`);
      return v;
    }
    case 'neg':
      return -calc(e.arg, lookup);
    case 'call': {
      const args = e.args.map((a) => calc(a, lookup));
      return e.fn === 'min' ? Math.min(...args) : Math.max(...args);
    }
    case 'bin': {
      const l = calc(e.left, lookup);
      const r = calc(e.right, lookup);
      switch (e.op) {
        case '+':
          return l + r;
        case '-':
          return l - r;
        case '*':
          return l * r;
        case '/':
          if (r === 0) throw new Error('division by zero');
          return l / r;
      }
    }
  }
}
