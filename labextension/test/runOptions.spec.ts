// The dialog's environment choice and "Run as experiment" request body (pure logic of params.ts).
import { chosenKernel, environmentChoices, experimentBody, IExperimentInput, validateExperiment } from '../src/params';

const CATALOG = {
  items: [
    { name: 'torch', display_name: 'PyTorch 2.4', description: 'CUDA 12', tenants: ['vision'], kernel_name: 'torch-24', python: '3.12', image: 'img/torch', env: {} },
    { name: 'base-image', display_name: 'Base image', description: '', tenants: [], kernel_name: null, python: '3.12', image: 'img/base', env: {} },
    { name: 'torch-copy', display_name: 'Same kernel again', description: '', tenants: [], kernel_name: 'torch-24', python: null, image: null, env: {} },
    { name: 'jax', display_name: '', description: null, tenants: [], kernel_name: 'jax', python: null, image: null, env: {} }
  ],
  total: 4,
  next_offset: null
};

describe('environmentChoices', () => {
  it('offers only environments that name a kernel, labelled by display_name, once per kernel', () => {
    expect(environmentChoices(CATALOG)).toEqual([
      { value: 'torch-24', label: 'PyTorch 2.4', description: 'CUDA 12' },
      { value: 'jax', label: 'jax', description: '' }
    ]);
  });

  it('offers nothing for an empty, failed or odd answer', () => {
    expect(environmentChoices({ items: [], total: 0, next_offset: null })).toEqual([]);
    expect(environmentChoices(null)).toEqual([]);
    expect(environmentChoices({ error: 'forbidden' })).toEqual([]);
    expect(environmentChoices({ items: [{ name: 'x', kernel_name: 3 }] })).toEqual([]);
  });

  it("sends the environment's kernel, else the notebook's own", () => {
    expect(chosenKernel('torch-24', 'python3')).toBe('torch-24');
    expect(chosenKernel('', 'python3')).toBe('python3');
  });
});

const JOB = {
  name: 'train',
  tenant: 'vision',
  profile: 'a100-1g',
  kernel_name: 'torch-24',
  priority: 'normal',
  timeout_s: 600,
  parameters: { lr: 0.1, hidden: 64, epochs: 3, tag: 'x' },
  sweep: { lr: [0.1, 0.01], hidden: [64, 128] }
};
const INPUT: IExperimentInput = { metric: 'val_acc', mode: 'max', strategy: 'grid', parallelism: '2', budgetParameter: '', budgetMax: '9' };

describe('experimentBody', () => {
  it('turns the sweep into the search space and keeps the other parameters fixed', () => {
    expect(experimentBody(JOB, INPUT)).toEqual({
      name: 'train',
      tenant: 'vision',
      profile: 'a100-1g',
      kernel_name: 'torch-24',
      priority: 'normal',
      timeout_s: 600,
      parameters: { epochs: 3, tag: 'x' },
      space: { lr: [0.1, 0.01], hidden: [64, 128] },
      objective: { metric: 'val_acc', mode: 'max' },
      strategy: 'grid',
      parallelism: 2
    });
  });

  it('gives asha its budget and leaves the budget parameter to the experiment', () => {
    const body = experimentBody(JOB, { ...INPUT, strategy: 'asha', mode: 'min', metric: ' loss ', budgetParameter: 'epochs', budgetMax: '27' });
    expect(body.budget).toEqual({ parameter: 'epochs', max: 27 });
    expect(body.parameters).toEqual({ tag: 'x' });
    expect(body.objective).toEqual({ metric: 'loss', mode: 'min' });
    expect(experimentBody(JOB, { ...INPUT, strategy: 'asha' }).budget).toEqual({ parameter: null, max: 9 });
  });

  it('leaves out the tenant, kernel and timeout the user did not give', () => {
    const body = experimentBody({ ...JOB, tenant: '', kernel_name: '', timeout_s: null }, { ...INPUT, strategy: 'random' });
    expect('tenant' in body || 'kernel_name' in body || 'timeout_s' in body || 'budget' in body).toBe(false);
    expect(body.strategy).toBe('random');
  });
});

describe('validateExperiment', () => {
  it('accepts a complete choice', () => {
    expect(validateExperiment(INPUT, ['lr'])).toEqual({});
    expect(validateExperiment({ ...INPUT, strategy: 'asha', budgetParameter: 'epochs' }, ['lr'])).toEqual({});
  });

  it('names each wrong field', () => {
    const errors = validateExperiment({ metric: '', mode: 'up', strategy: 'tpe', parallelism: '0', budgetParameter: '', budgetMax: '' }, []);
    expect(Object.keys(errors).sort()).toEqual(['metric', 'mode', 'parallelism', 'strategy', 'sweep']);
    expect(validateExperiment({ ...INPUT, parallelism: '33' }, ['lr']).parallelism).toMatch(/1 to 32/);
    expect(validateExperiment({ ...INPUT, strategy: 'asha', budgetMax: '0' }, ['lr']).budgetMax).toMatch(/asha/);
    expect(validateExperiment({ ...INPUT, strategy: 'asha', budgetParameter: 'lr' }, ['lr']).budgetParameter).toMatch(/swept/);
  });
});
