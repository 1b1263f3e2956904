import {
  defaultText,
  evaluateForm,
  expandGrid,
  IParameter,
  jobNameFrom,
  normalizeParameters,
  normalizeType,
  parseValue,
  pythonLiteralToValue,
  splitSweep,
  sweepJobName,
  validateJobFields
} from '../src/params';

// what job_runner.params.inspect_parameters returns for
//   lr = 0.01  # learning rate
//   epochs: int = 3
//   optimizer = 'adam'
//   layers = [64, 32]
//   verbose = True
//   extra = None
const INSPECTED = {
  lr: { name: 'lr', type: 'float', inferred_type_name: 'None', default: '0.01', help: 'learning rate' },
  epochs: { name: 'epochs', type: 'int', inferred_type_name: 'int', default: '3', help: '' },
  optimizer: { name: 'optimizer', type: 'str', inferred_type_name: 'None', default: "'adam'", help: '' },
  layers: { name: 'layers', type: 'list', inferred_type_name: 'None', default: '[64, 32]', help: '' },
  verbose: { name: 'verbose', type: 'bool', inferred_type_name: 'None', default: 'True', help: '' },
  extra: { name: 'extra', type: 'None', inferred_type_name: 'None', default: 'None', help: '' }
};

const params = normalizeParameters({ parameters: INSPECTED });
const byName = (n: string) => params.find(p => p.name === n) as IParameter;

function inputs(overrides: Record<string, { text: string; sweep?: boolean }> = {}) {
  const out: Record<string, { text: string; sweep: boolean }> = {};
  for (const p of params) {
    out[p.name] = { text: defaultText(p), sweep: false };
  }
  for (const [k, v] of Object.entries(overrides)) {
    out[k] = { text: v.text, sweep: !!v.sweep };
  }
  return out;
}

describe('parameter typing', () => {
  it('keeps notebook order, types, defaults and help', () => {
    expect(params.map(p => p.name)).toEqual(['lr', 'epochs', 'optimizer', 'layers', 'verbose', 'extra']);
    expect(byName('lr')).toEqual({ name: 'lr', type: 'float', default: '0.01', help: 'learning rate' });
    expect(byName('epochs').type).toBe('int');
  });

  it('accepts a list of parameters and papermill names', () => {
    const ps = normalizeParameters([{ name: 'a', inferred_type_name: 'Optional[int]', default: 'None' }]);
    expect(ps).toEqual([{ name: 'a', type: 'int', default: 'None', help: '' }]);
  });

  it('maps annotations to form types', () => {
    expect(normalizeType('List[int]')).toBe('list');
    expect(normalizeType('Dict[str, float]')).toBe('dict');
    expect(normalizeType('Optional[str]')).toBe('str');
    expect(normalizeType('NoneType')).toBe('None');
  });

  it('reads Python literals of defaults', () => {
    expect(pythonLiteralToValue("'adam'")).toBe('adam');
    expect(pythonLiteralToValue('"it\\"s"')).toBe('it"s');
    expect(pythonLiteralToValue('True')).toBe(true);
    expect(pythonLiteralToValue('None')).toBeNull();
    expect(pythonLiteralToValue('1e-3')).toBe(0.001);
    expect(pythonLiteralToValue("{'a': [1, None], 'b': False,}")).toEqual({ a: [1, null], b: false });
    expect(defaultText(byName('optimizer'))).toBe('adam');
    expect(defaultText(byName('verbose'))).toBe('true');
    expect(defaultText(byName('layers'))).toBe('[64,32]');
  });
});

describe('validation', () => {
  it('parses each type', () => {
    expect(parseValue(byName('epochs'), ' 7 ')).toEqual({ ok: true, value: 7 });
    expect(parseValue(byName('lr'), '3e-4')).toEqual({ ok: true, value: 0.0003 });
    expect(parseValue(byName('verbose'), 'False')).toEqual({ ok: true, value: false });
    expect(parseValue(byName('optimizer'), ' sgd ')).toEqual({ ok: true, value: ' sgd ' });
    expect(parseValue(byName('layers'), '[128]')).toEqual({ ok: true, value: [128] });
    expect(parseValue(byName('layers'), '[1, 2,]')).toEqual({ ok: true, value: [1, 2] });
    expect(parseValue(byName('extra'), '{"k": 1}')).toEqual({ ok: true, value: { k: 1 } });
    expect(parseValue(byName('extra'), 'None')).toEqual({ ok: true, value: null });
  });

  it('refuses wrong types with a message naming the parameter', () => {
    expect(parseValue(byName('epochs'), '2.5').error).toMatch(/epochs expects a whole number/);
    expect(parseValue(byName('epochs'), '').ok).toBe(false);
    expect(parseValue(byName('lr'), 'fast').error).toMatch(/lr expects a number/);
    expect(parseValue(byName('lr'), 'Infinity').ok).toBe(false);
    expect(parseValue(byName('verbose'), 'maybe').error).toMatch(/true or false/);
    expect(parseValue(byName('layers'), '{"a": 1}').error).toMatch(/expects a list/);
  });

  it('sends only changed parameters, and reports every error', () => {
    const ok = evaluateForm(params, inputs({ epochs: { text: '5' } }));
    expect(ok.errors).toEqual({});
    expect(ok.grid).toEqual([{ epochs: 5 }]);
    const bad = evaluateForm(params, inputs({ epochs: { text: 'five' }, lr: { text: 'x' } }));
    expect(Object.keys(bad.errors).sort()).toEqual(['epochs', 'lr']);
    expect(bad.grid).toEqual([]);
  });

  it('makes valid job names from file names', () => {
    expect(jobNameFrom('work/My Notebook (2).ipynb')).toBe('my-notebook-2');
    expect(jobNameFrom('___.ipynb')).toBe('job');
    expect(validateJobFields({ name: jobNameFrom('x'.repeat(80)), timeoutMinutes: '', retries: '0', outputLocation: '' })).toEqual({});
  });

  it('checks the job fields', () => {
    const good = { name: 'train', timeoutMinutes: '30', retries: '1', outputLocation: 'aistack-jobs' };
    expect(validateJobFields(good)).toEqual({});
    expect(Object.keys(validateJobFields({ ...good, name: ' ', timeoutMinutes: '-1', retries: '1.5', outputLocation: '../x' })).sort()).toEqual(
      ['name', 'outputLocation', 'retries', 'timeoutMinutes']
    );
    expect(validateJobFields({ ...good, timeoutMinutes: '' })).toEqual({});
    // the optional expected run time (estimates of the jobs behind this one use it)
    expect(validateJobFields({ ...good, expectedMinutes: '' })).toEqual({});
    expect(validateJobFields({ ...good, expectedMinutes: '12.5' })).toEqual({});
    expect(validateJobFields({ ...good, expectedMinutes: '0' }).expectedMinutes).toMatch(/positive number of minutes/);
    expect(validateJobFields({ ...good, name: 'Train_Model' }).name).toMatch(/lower-case/);
    expect(validateJobFields({ ...good, name: 'train-' }).name).toMatch(/lower-case/);
  });
});

describe('sweeps', () => {
  it('splits values by type', () => {
    expect(splitSweep(byName('lr'), '0.1, 0.01\n0.001')).toEqual(['0.1', '0.01', '0.001']);
    expect(splitSweep(byName('optimizer'), 'adam, beta\nsgd\n')).toEqual(['adam, beta', 'sgd']);
    expect(splitSweep(byName('layers'), '[1, 2]\n[3]')).toEqual(['[1, 2]', '[3]']);
  });

  it('expands a grid, first parameter slowest', () => {
    expect(expandGrid({ verbose: false }, { lr: [0.1, 0.01], epochs: [1, 2, 3] })).toEqual([
      { verbose: false, lr: 0.1, epochs: 1 },
      { verbose: false, lr: 0.1, epochs: 2 },
      { verbose: false, lr: 0.1, epochs: 3 },
      { verbose: false, lr: 0.01, epochs: 1 },
      { verbose: false, lr: 0.01, epochs: 2 },
      { verbose: false, lr: 0.01, epochs: 3 }
    ]);
    expect(expandGrid({ a: 1 }, {})).toEqual([{ a: 1 }]);
  });

  it('evaluates a sweep form into the grid and the sweep', () => {
    const r = evaluateForm(params, inputs({ lr: { text: '0.1,0.2', sweep: true }, optimizer: { text: 'sgd\nadam', sweep: true }, epochs: { text: '4' } }));
    expect(r.errors).toEqual({});
    expect(r.sweep).toEqual({ lr: [0.1, 0.2], optimizer: ['sgd', 'adam'] });
    expect(r.grid).toHaveLength(4);
    expect(r.grid[0]).toEqual({ epochs: 4, lr: 0.1, optimizer: 'sgd' });
    expect(sweepJobName('train', r.grid[3], r.sweep)).toBe('train [lr=0.2, optimizer=adam]');
  });

  it('refuses a bad value inside a sweep, an empty sweep and a grid over the limit', () => {
    expect(evaluateForm(params, inputs({ epochs: { text: '1, two', sweep: true } })).errors.epochs).toMatch(/whole number/);
    expect(evaluateForm(params, inputs({ epochs: { text: ' ', sweep: true } })).errors.epochs).toMatch(/at least one/);
    const big = evaluateForm(params, inputs({ epochs: { text: '1,2,3,4,5', sweep: true }, lr: { text: '1,2,3', sweep: true } }), 10);
    expect(big.errors._sweep).toMatch(/15 jobs; the limit is 10/);
  });
});
