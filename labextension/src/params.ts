/**
 * The form logic of the Run-as-job dialog, free of any DOM or JupyterLab dependency so that it can be
 * unit tested: typing the notebook's parameters, parsing and validating what the user typed, and
 * expanding a sweep (several values per parameter) into the grid of jobs it stands for.
 */

/** A parameter of the notebook's `parameters` cell, as papermill's inspection describes it. */
export interface IParameter {
  name: string;
  /** Python type name: int, float, str, bool, list, dict, None, or another name papermill inferred. */
  type: string;
  /** The default as Python source text (papermill keeps it as written, e.g. "0.01" or "'adam'"). */
  default: string;
  help: string;
}

export type ParamValue = null | boolean | number | string | ParamValue[] | { [key: string]: ParamValue };

/** What the form holds for one parameter: a single value, or the values of a sweep. */
export interface IFieldInput {
  text: string;
  sweep: boolean;
}

export interface IParseResult {
  ok: boolean;
  value?: ParamValue;
  error?: string;
}

const KNOWN_TYPES = new Set(['int', 'float', 'str', 'bool', 'list', 'dict', 'None']);

/**
 * Normalise the service's parameter description (a list, or papermill's dict keyed by name with
 * `inferred_type_name`) into a list of IParameter in notebook order.
 */
export function normalizeParameters(raw: unknown): IParameter[] {
  let items: any[] = [];
  if (Array.isArray(raw)) {
    items = raw;
  } else if (raw && typeof raw === 'object') {
    const obj = raw as any;
    if (Array.isArray(obj.parameters)) {
      items = obj.parameters;
    } else if (obj.parameters && typeof obj.parameters === 'object') {
      items = Object.entries(obj.parameters).map(([name, v]: [string, any]) => ({ name, ...v }));
    } else {
      items = Object.entries(obj).map(([name, v]: [string, any]) => ({ name, ...v }));
    }
  }
  return items
    .filter(p => p && typeof p.name === 'string')
    .map(p => ({
      name: p.name,
      type: normalizeType(p.type ?? p.inferred_type_name ?? p.type_name ?? 'None'),
      default: p.default === undefined || p.default === null ? 'None' : String(p.default),
      help: p.help ? String(p.help) : ''
    }));
}

/** Map Python annotations to the types the form knows ("Optional[int]" -> int, "List[str]" -> list). */
export function normalizeType(type: string): string {
  const t = String(type).trim();
  if (KNOWN_TYPES.has(t)) {
    return t;
  }
  const lower = t.toLowerCase();
  const optional = /^optional\[(.*)\]$/i.exec(t);
  if (optional) {
    return normalizeType(optional[1]);
  }
  if (/^(list|tuple|sequence)\b/i.test(t)) {
    return 'list';
  }
  if (/^(dict|mapping)\b/i.test(t)) {
    return 'dict';
  }
  if (lower === 'integer') {
    return 'int';
  }
  if (lower === 'boolean') {
    return 'bool';
  }
  if (lower === 'string') {
    return 'str';
  }
  if (lower === 'nonetype' || lower === 'none' || lower === '') {
    return 'None';
  }
  return t;
}

/** Convert a Python literal (as papermill reports defaults) into a value, where that is possible. */
export function pythonLiteralToValue(source: string): ParamValue {
  const s = source.trim();
  if (s === 'None') {
    return null;
  }
  if (s === 'True') {
    return true;
  }
  if (s === 'False') {
    return false;
  }
  const quoted = /^(?:'([^'\\]*(?:\\.[^'\\]*)*)'|"([^"\\]*(?:\\.[^"\\]*)*)")$/s.exec(s);
  if (quoted) {
    return (quoted[1] ?? quoted[2]).replace(/\\(.)/g, '$1');
  }
  if (/^[+-]?\d+$/.test(s)) {
    return parseInt(s, 10);
  }
  if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) {
    return parseFloat(s);
  }
  try {
    // lists and dicts written JSON-compatibly; turn Python's True/False/None and quotes into JSON
    const json = s
      .replace(/\bTrue\b/g, 'true')
      .replace(/\bFalse\b/g, 'false')
      .replace(/\bNone\b/g, 'null')
      .replace(/'/g, '"')
      .replace(/,\s*([\]}])/g, '$1');
    return JSON.parse(json);
  } catch {
    return s;
  }
}

/** The text a form field shows for a value of a given type. */
export function valueToText(type: string, value: ParamValue): string {
  if (type === 'str' && typeof value === 'string') {
    return value;
  }
  if (value === null) {
    return type === 'str' ? '' : 'None';
  }
  if (typeof value === 'boolean') {
    return value ? 'true' : 'false';
  }
  if (typeof value === 'number') {
    return String(value);
  }
  if (typeof value === 'string') {
    return value;
  }
  return JSON.stringify(value);
}

/** The text a field starts with: the parameter's default. */
export function defaultText(param: IParameter): string {
  return valueToText(param.type, pythonLiteralToValue(param.default));
}

/** Parse one typed value. Errors say what the parameter expects, in words a user understands. */
export function parseValue(param: IParameter, text: string): IParseResult {
  const s = text.trim();
  switch (param.type) {
    case 'int':
      if (/^[+-]?\d+$/.test(s)) {
        return { ok: true, value: parseInt(s, 10) };
      }
      return { ok: false, error: `${param.name} expects a whole number (int), got "${text}"` };
    case 'float': {
      const n = Number(s);
      if (s !== '' && /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s) && Number.isFinite(n)) {
        return { ok: true, value: n };
      }
      return { ok: false, error: `${param.name} expects a number (float), got "${text}"` };
    }
    case 'bool': {
      const l = s.toLowerCase();
      if (['true', '1', 'yes'].includes(l)) {
        return { ok: true, value: true };
      }
      if (['false', '0', 'no'].includes(l)) {
        return { ok: true, value: false };
      }
      return { ok: false, error: `${param.name} expects true or false, got "${text}"` };
    }
    case 'str':
      return { ok: true, value: text };
    case 'list':
    case 'dict': {
      let v: unknown;
      try {
        v = JSON.parse(s);
      } catch {
        v = pythonLiteralToValue(s);
      }
      const isList = Array.isArray(v);
      const isDict = v !== null && typeof v === 'object' && !isList;
      if ((param.type === 'list' && isList) || (param.type === 'dict' && isDict)) {
        return { ok: true, value: v as ParamValue };
      }
      return {
        ok: false,
        error: `${param.name} expects a ${param.type === 'list' ? 'list, e.g. [1, 2]' : 'dict, e.g. {"a": 1}'}, got "${text}"`
      };
    }
    default:
      // None or a type the form does not know: accept JSON, else keep the text as a string
      if (s === '' || s === 'None' || s === 'null') {
        return { ok: true, value: null };
      }
      try {
        return { ok: true, value: JSON.parse(s) };
      } catch {
        return { ok: true, value: pythonLiteralToValue(s) };
      }
  }
}

/**
 * Split the text of a sweep field into the texts of its values: one per line for strings, lists and
 * dicts (they may contain commas); commas or lines for numbers and booleans.
 */
export function splitSweep(param: IParameter, text: string): string[] {
  const byLine = ['str', 'list', 'dict'].includes(param.type);
  const parts = byLine ? text.split('\n') : text.split(/[\n,]/);
  return parts.map(p => (param.type === 'str' ? p.replace(/\r$/, '') : p.trim())).filter(p => p.trim() !== '');
}

export interface IFormResult {
  /** One parameter dict per job: a single entry without a sweep, the grid with one. */
  grid: Record<string, ParamValue>[];
  /** The swept parameters and their values (empty without a sweep). */
  sweep: Record<string, ParamValue[]>;
  errors: Record<string, string>;
}

/** Cartesian product of the sweep values, the first parameter varying slowest. */
export function expandGrid(
  base: Record<string, ParamValue>,
  sweep: Record<string, ParamValue[]>
): Record<string, ParamValue>[] {
  let grid: Record<string, ParamValue>[] = [{ ...base }];
  for (const [name, values] of Object.entries(sweep)) {
    const next: Record<string, ParamValue>[] = [];
    for (const point of grid) {
      for (const v of values) {
        next.push({ ...point, [name]: v });
      }
    }
    grid = next;
  }
  return grid;
}

/**
 * Validate the whole form. Only parameters whose text differs from the default are sent (the
 * notebook keeps its own defaults otherwise), but every field is checked.
 */
export function evaluateForm(
  params: IParameter[],
  inputs: Record<string, IFieldInput>,
  maxJobs = 64
): IFormResult {
  const errors: Record<string, string> = {};
  const base: Record<string, ParamValue> = {};
  const sweep: Record<string, ParamValue[]> = {};
  for (const p of params) {
    const input = inputs[p.name];
    if (!input) {
      continue;
    }
    if (input.sweep) {
      const texts = splitSweep(p, input.text);
      if (texts.length === 0) {
        errors[p.name] = `${p.name}: give at least one value to sweep`;
        continue;
      }
      const values: ParamValue[] = [];
      for (const t of texts) {
        const r = parseValue(p, t);
        if (!r.ok) {
          errors[p.name] = r.error!;
          break;
        }
        values.push(r.value!);
      }
      if (!errors[p.name]) {
        sweep[p.name] = values;
      }
    } else {
      if (input.text === defaultText(p)) {
        continue;
      }
      const r = parseValue(p, input.text);
      if (r.ok) {
        base[p.name] = r.value!;
      } else {
        errors[p.name] = r.error!;
      }
    }
  }
  let grid: Record<string, ParamValue>[] = [];
  if (Object.keys(errors).length === 0) {
    const size = Object.values(sweep).reduce((n, vs) => n * vs.length, 1);
    if (size > maxJobs) {
      errors['_sweep'] = `the sweep would submit ${size} jobs; the limit is ${maxJobs}`;
    } else {
      grid = expandGrid(base, sweep);
    }
  }
  return { grid, sweep, errors };
}

/** Checks on the job-level fields of the dialog (not the notebook's parameters). */
export interface IJobFields {
  name: string;
  timeoutMinutes: string;
  /** How long the user expects the job to run (empty: not given; estimates then use past runs). */
  expectedMinutes?: string;
  retries: string;
  outputLocation: string;
}

export function validateJobFields(f: IJobFields): Record<string, string> {
  const errors: Record<string, string> = {};
  // job names become Kubernetes object names (the service refuses others)
  const name = f.name.trim();
  if (!name) {
    errors.name = 'give the job a name';
  } else if (name.length > 63 || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name)) {
    errors.name = 'use lower-case letters, digits and "-" (starting and ending with a letter or digit), at most 63 characters';
  }
  if (f.timeoutMinutes.trim() !== '') {
    const t = Number(f.timeoutMinutes);
    if (!Number.isFinite(t) || t <= 0) {
      errors.timeoutMinutes = 'the timeout must be a positive number of minutes';
    }
  }
  if ((f.expectedMinutes ?? '').trim() !== '') {
    const t = Number(f.expectedMinutes);
    if (!Number.isFinite(t) || t <= 0) {
      errors.expectedMinutes = 'the expected run time must be a positive number of minutes';
    }
  }
  if (!/^\d+$/.test(f.retries.trim()) || parseInt(f.retries, 10) > 10) {
    errors.retries = 'retries must be a whole number from 0 to 10';
  }
  const out = f.outputLocation.trim();
  if (out.startsWith('/') || out.split('/').includes('..')) {
    errors.outputLocation = 'the output location is a folder relative to your home, without ".."';
  }
  return errors;
}

/** A job name that says which sweep point it is, e.g. "train [lr=0.1, epochs=3]". */
export function sweepJobName(name: string, point: Record<string, ParamValue>, sweep: Record<string, ParamValue[]>): string {
  const keys = Object.keys(sweep);
  if (keys.length === 0) {
    return name;
  }
  return `${name} [${keys.map(k => `${k}=${valueToText('', point[k])}`).join(', ')}]`;
}

/** A valid job name made from a notebook file name: "My Notebook (2).ipynb" -> "my-notebook-2". */
export function jobNameFrom(fileName: string): string {
  const stem = fileName.replace(/^.*\//, '').replace(/\.ipynb$/i, '');
  const name = stem
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 50)
    .replace(/-+$/, '');
  return name || 'job';
}

// --- environments + experiments from the Run-as-job dialog ---

/** One choice of the dialog's "Environment" field: `value` is what POST jobs gets as `kernel_name`. */
export interface IEnvironmentChoice {
  value: string;
  label: string;
  description: string;
}

/**
 * The environments of `GET environments?tenant=T` that name a kernel (label: display_name), in the
 * service's order, one per kernel; the dialog puts "The notebook's own kernel" (value '') before them.
 */
export function environmentChoices(raw: any): IEnvironmentChoice[] {
  const items: any[] = Array.isArray(raw?.items) ? raw.items : Array.isArray(raw) ? raw : [];
  const seen = new Set<string>();
  const out: IEnvironmentChoice[] = [];
  for (const e of items) {
    const kernel = e?.kernel_name;
    if (typeof kernel !== 'string' || !kernel || seen.has(kernel)) {
      continue;
    }
    seen.add(kernel);
    out.push({ value: kernel, label: String(e.display_name || e.name || kernel), description: String(e.description || '') });
  }
  return out;
}

/** The kernel a job runs with: the chosen environment's kernel, else the notebook's own. */
export function chosenKernel(environment: string, notebookKernel: string): string {
  return environment || notebookKernel;
}

export type ExperimentStrategy = 'grid' | 'random' | 'asha';

/** What the dialog's "Run as experiment" part asks (texts as typed). */
export interface IExperimentInput {
  metric: string;
  mode: string;
  strategy: string;
  parallelism: string;
  /** asha: the notebook parameter that receives the budget (epochs…), '' = none */
  budgetParameter: string;
  budgetMax: string;
}

/** Field errors of the experiment part ({} when it may be submitted); `swept`: the swept parameters. */
export function validateExperiment(input: IExperimentInput, swept: string[], maxParallelism = 32): Record<string, string> {
  const errors: Record<string, string> = {};
  if (!swept.length) {
    errors.sweep = 'an experiment searches the swept parameters: sweep at least one';
  }
  if (!/^[A-Za-z_][A-Za-z0-9_.\-/]*$/.test(input.metric.trim())) {
    errors.metric = 'the metric the notebook reports (a name such as val_acc)';
  }
  if (input.mode !== 'max' && input.mode !== 'min') {
    errors.mode = 'max or min';
  }
  if (!['grid', 'random', 'asha'].includes(input.strategy)) {
    errors.strategy = 'grid, random or asha';
  }
  const par = Number(input.parallelism);
  if (!/^\d+$/.test(input.parallelism.trim()) || par < 1 || par > maxParallelism) {
    errors.parallelism = `a whole number from 1 to ${maxParallelism}`;
  }
  if (input.strategy === 'asha') {
    const max = Number(input.budgetMax);
    if (!/^\d+$/.test(input.budgetMax.trim()) || max < 1) {
      errors.budgetMax = 'asha stops trials early: the most budget (epochs…) a trial gets, a whole number >= 1';
    }
    if (input.budgetParameter && swept.includes(input.budgetParameter)) {
      errors.budgetParameter = 'the budget parameter cannot also be swept';
    }
  }
  return errors;
}

/** The job fields the experiment shares with POST jobs. */
export interface IExperimentJobFields {
  name: string;
  tenant: string;
  profile: string;
  kernel_name: string;
  priority: string;
  timeout_s: number | null;
  parameters: Record<string, ParamValue>;
  sweep: Record<string, ParamValue[]> | null;
}

/**
 * The body of POST experiments (docs/experiments.md) for the dialog's job fields and experiment choice:
 * the sweep's values become the search space, the other parameters stay fixed for every trial. The
 * notebook (`notebook` or `path`) is added by the caller.
 */
export function experimentBody(job: IExperimentJobFields, input: IExperimentInput): Record<string, unknown> {
  const strategy = input.strategy as ExperimentStrategy;
  const space: Record<string, ParamValue[]> = { ...(job.sweep ?? {}) };
  const fixed: Record<string, ParamValue> = { ...job.parameters };
  for (const k of Object.keys(space)) {
    delete fixed[k];
  }
  const body: Record<string, unknown> = {
    name: job.name,
    profile: job.profile,
    priority: job.priority,
    parameters: fixed,
    space,
    objective: { metric: input.metric.trim(), mode: input.mode === 'min' ? 'min' : 'max' },
    strategy,
    parallelism: parseInt(input.parallelism, 10)
  };
  if (job.tenant) {
    body.tenant = job.tenant;
  }
  if (job.kernel_name) {
    body.kernel_name = job.kernel_name;
  }
  if (job.timeout_s !== null) {
    body.timeout_s = job.timeout_s;
  }
  if (strategy === 'asha') {
    const parameter = input.budgetParameter || null;
    body.budget = { parameter, max: parseInt(input.budgetMax, 10) };
    if (parameter) {
      delete fixed[parameter]; // the trial's budget is set by the experiment, rung by rung
    }
  }
  return body;
}
