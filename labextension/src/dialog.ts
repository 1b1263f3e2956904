/**
 * The Run-as-job dialog: job name, tenant, profile (free capacity, quota left, wait), kernel, the
 * typed form of the notebook's parameters with sweeps, priority, timeout, retries and output location.
 * Values are validated as the user types (the dialog's Submit stays disabled while a field is invalid)
 * and once more when Submit is pressed.
 */
import { Dialog } from '@jupyterlab/apputils';
import { TranslationBundle } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import {
  chosenKernel,
  defaultText,
  environmentChoices,
  evaluateForm,
  experimentBody,
  IEnvironmentChoice,
  IExperimentInput,
  IFieldInput,
  IFormResult,
  IParameter,
  jobNameFrom,
  ParamValue,
  validateExperiment,
  validateJobFields
} from './params';
import { waitText } from './jobs';
import { createExperiment, loadEnvironments } from './api';

export interface ITenantInfo {
  name: string;
  admin?: boolean;
  /** Whether the user holds the tenant's grant for each priority (GET me); the emergency grant includes high. */
  high?: boolean;
  emergency?: boolean;
}

export interface IProfileInfo {
  slug: string;
  display_name?: string;
  description?: string;
  free?: number;
  quota_left?: Record<string, number | null>;
  fits_quota?: boolean;
  estimated_wait_s?: number | null;
}

export interface IDialogOptions {
  notebookName: string;
  params: IParameter[];
  tenants: ITenantInfo[];
  /** Profiles per tenant name (loaded when a tenant is picked). */
  loadProfiles: (tenant: string) => Promise<IProfileInfo[]>;
  kernels: { name: string; display: string }[];
  kernel: string;
  defaults: {
    profile: string;
    outputLocation: string;
    timeoutMinutes: number;
    retries: number;
    maxSweepJobs: number;
  };
  /** Values to start from (rerun with edited parameters). */
  initial?: { name?: string; tenant?: string; profile?: string; parameters?: Record<string, ParamValue>; priority?: string };
  trans: TranslationBundle;
  /** The tenant's environment catalog (`GET environments?tenant=T`); default: the service's. */
  loadEnvironments?: (tenant: string) => Promise<any>;
  /**
   * "Run as experiment" (a sweep searched by the experiments service) is offered when the caller gives
   * the notebook's path (its unsaved content too, if any) and how to open the experiment's view.
   */
  notebookPath?: string;
  notebookContent?: unknown;
  openExperiment?: (id: string) => unknown;
}

export interface IJobRequest {
  name: string;
  tenant: string;
  profile: string;
  kernel_name: string;
  priority: string;
  timeout_s: number | null;
  /** The user's own guess of the run time: start estimates of the jobs behind this one use it. */
  expected_duration_s: number | null;
  max_retries: number;
  output_location: string;
  parameters: Record<string, ParamValue>;
  sweep: Record<string, ParamValue[]> | null;
  /** How many jobs this request stands for (the sweep's grid size). */
  count: number;
}

let nextId = 0;

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    node.setAttribute(k, v);
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

function fmtMilli(v: number | null | undefined, unit: string): string {
  if (v === null || v === undefined) {
    return '∞';
  }
  return unit === 'gpu' ? `${(v / 1000).toFixed(v % 1000 ? 2 : 0)} GPU` : unit === 'cpu' ? `${(v / 1000).toFixed(1)} CPU` : `${Math.round(v / 1024)} GiB`;
}

/** The words under a profile: free capacity, quota left, and what the wait will be. */
export function profileSummary(p: IProfileInfo, trans: TranslationBundle): string {
  const parts: string[] = [];
  if (typeof p.free === 'number') {
    parts.push(trans.__('%1 free now', p.free));
  }
  const q = p.quota_left;
  if (q) {
    const left = [
      q.gpu_milli !== undefined ? fmtMilli(q.gpu_milli, 'gpu') : null,
      q.cpu_milli !== undefined ? fmtMilli(q.cpu_milli, 'cpu') : null,
      q.memory_mib !== undefined ? fmtMilli(q.memory_mib, 'mem') : null
    ].filter(Boolean);
    if (left.length) {
      parts.push(trans.__('quota left: %1', left.join(', ')));
    }
  }
  if (p.fits_quota === false) {
    parts.push(trans.__('over your quota: waits until your jobs finish'));
  } else if (typeof p.estimated_wait_s === 'number') {
    parts.push(p.estimated_wait_s <= 1 ? trans.__('starts now') : trans.__('wait %1', waitText(p.estimated_wait_s, p.estimated_wait_s)));
  } else if (typeof p.free === 'number') {
    parts.push(p.free > 0 ? trans.__('starts now') : trans.__('queues until a slice frees up'));
  }
  return parts.join(' · ');
}

export class RunJobForm extends Widget implements Dialog.IBodyWidget<IJobRequest | null> {
  constructor(private options: IDialogOptions) {
    super();
    this.addClass('aistack-RunJobForm');
    this.id = `aistack-run-job-form-${nextId++}`;
    this.build();
  }

  /** The job request, or null when the form is invalid (errors are shown next to the fields). */
  getValue(): IJobRequest | null {
    return this.validate(true) ? this.request() : null;
  }

  /** Check every field; shows messages; returns whether the form may be submitted. */
  validate(showAll = false): boolean {
    const trans = this.options.trans;
    const jobErrors = validateJobFields({
      name: this.nameInput.value,
      timeoutMinutes: this.timeoutInput.value,
      expectedMinutes: this.expectedInput.value,
      retries: this.retriesInput.value,
      outputLocation: this.outputInput.value
    });
    this.setError(this.nameInput, jobErrors.name, showAll);
    this.setError(this.timeoutInput, jobErrors.timeoutMinutes, showAll);
    this.setError(this.expectedInput, jobErrors.expectedMinutes, showAll);
    this.setError(this.retriesInput, jobErrors.retries, showAll);
    this.setError(this.outputInput, jobErrors.outputLocation, showAll);
    const profileMissing = !this.profileSelect.value ? trans.__('pick a profile') : undefined;
    this.setError(this.profileSelect, profileMissing, showAll);
    const form = this.evaluate();
    for (const p of this.options.params) {
      this.setError(this.paramInputs.get(p.name)!.input, form.errors[p.name], true);
    }
    this.sweepNote.textContent = form.errors._sweep
      ? form.errors._sweep
      : Object.keys(form.sweep).length
        ? trans.__('This sweep submits %1 jobs, one per combination.', form.grid.length)
        : '';
    this.sweepNote.classList.toggle('aistack-mod-error', !!form.errors._sweep);
    const expErrors = this.validateExperimentPart(Object.keys(form.sweep), showAll);
    this.validated();
    return Object.keys(jobErrors).length === 0 && !profileMissing && Object.keys(form.errors).length === 0 && Object.keys(expErrors).length === 0;
  }

  /** Whether the user asked for an experiment (a sweep is filled and "Run as experiment" is ticked). */
  get asExperiment(): boolean {
    return !!this.expToggle && this.expToggle.checked && this.expBox.style.display !== 'none';
  }

  /** The body of POST experiments (without the notebook), or null when the form is invalid. */
  experimentRequest(): Record<string, unknown> | null {
    return this.validate(true) ? experimentBody(this.request(), this.experimentInput()) : null;
  }

  private experimentInput(): IExperimentInput {
    return {
      metric: this.expMetric.value,
      mode: this.expMode.value,
      strategy: this.expStrategy.value,
      parallelism: this.expParallelism.value,
      budgetParameter: this.expBudgetParam.value,
      budgetMax: this.expBudgetMax.value
    };
  }

  private validateExperimentPart(swept: string[], showAll: boolean): Record<string, string> {
    if (!this.expToggle) {
      return {};
    }
    this.expBox.style.display = swept.length ? '' : 'none';
    const on = this.asExperiment;
    this.expFields.style.display = on ? '' : 'none';
    const asha = this.expStrategy.value === 'asha';
    for (const row of [this.expBudgetParam, this.expBudgetMax]) {
      (row.closest('.aistack-RunJobForm-row') as HTMLElement).style.display = asha ? '' : 'none';
    }
    const errors = on ? validateExperiment(this.experimentInput(), swept) : {};
    const trans = this.options.trans;
    this.setError(this.expMetric, errors.metric && trans.__(errors.metric), showAll);
    this.setError(this.expParallelism, errors.parallelism && trans.__(errors.parallelism), showAll);
    this.setError(this.expBudgetMax, errors.budgetMax && trans.__(errors.budgetMax), showAll);
    this.setError(this.expBudgetParam, errors.budgetParameter && trans.__(errors.budgetParameter), showAll);
    if (on && !errors.sweep) {
      this.sweepNote.textContent = trans.__('The experiment searches these %1 combinations for the best %2 (%3).', this.evaluate().grid.length, this.expMetric.value || '…', this.expStrategy.value);
    }
    return errors;
  }

  private evaluate(): IFormResult {
    const inputs: Record<string, IFieldInput> = {};
    for (const p of this.options.params) {
      const f = this.paramInputs.get(p.name)!;
      inputs[p.name] = { text: f.input.value, sweep: f.sweep.checked };
    }
    return evaluateForm(this.options.params, inputs, this.options.defaults.maxSweepJobs);
  }

  private request(): IJobRequest {
    const form = this.evaluate();
    const sweeping = Object.keys(form.sweep).length > 0;
    const base = { ...form.grid[0] };
    for (const k of Object.keys(form.sweep)) {
      delete base[k];
    }
    const timeout = this.timeoutInput.value.trim();
    const expected = this.expectedInput.value.trim();
    return {
      name: this.nameInput.value.trim(),
      tenant: this.tenantSelect.value,
      profile: this.profileSelect.value,
      kernel_name: chosenKernel(this.envSelect.value, this.kernelSelect.value),
      priority: this.prioritySelect.value,
      timeout_s: timeout ? Math.round(Number(timeout) * 60) : null,
      expected_duration_s: expected ? Math.round(Number(expected) * 60) : null,
      max_retries: parseInt(this.retriesInput.value, 10),
      output_location: this.outputInput.value.trim(),
      parameters: base,
      sweep: sweeping ? form.sweep : null,
      count: form.grid.length
    };
  }

  private setError(input: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement, message: string | undefined, show: boolean): void {
    input.setCustomValidity(message ?? '');
    input.setAttribute('aria-invalid', message ? 'true' : 'false');
    const box = this.node.querySelector(`#${input.id}-error`);
    if (box && (show || !message)) {
      box.textContent = message ?? '';
    }
  }

  private field(label: string, input: HTMLElement, help?: string): HTMLElement {
    const row = el('div', { class: 'aistack-RunJobForm-row' });
    const id = `${this.id}-${nextId++}`;
    input.id = id;
    row.appendChild(el('label', { for: id }, label));
    row.appendChild(input);
    if (help) {
      const h = el('div', { class: 'aistack-RunJobForm-help', id: `${id}-help` }, help);
      input.setAttribute('aria-describedby', `${id}-help ${id}-error`);
      row.appendChild(h);
    } else {
      input.setAttribute('aria-describedby', `${id}-error`);
    }
    row.appendChild(el('div', { class: 'aistack-RunJobForm-error', id: `${id}-error`, role: 'alert', 'aria-live': 'polite' }));
    return row;
  }

  private select(options: { value: string; label: string }[], value: string, name: string): HTMLSelectElement {
    const s = el('select', { name, class: 'jp-mod-styled' });
    for (const o of options) {
      const opt = el('option', { value: o.value }, o.label);
      s.appendChild(opt);
    }
    if (options.some(o => o.value === value)) {
      s.value = value;
    }
    return s;
  }

  private build(): void {
    const { trans, params, tenants, defaults, initial } = this.options;
    const node = this.node;

    this.nameInput = el('input', { type: 'text', name: 'name', class: 'jp-mod-styled' });
    this.nameInput.value = initial?.name ?? jobNameFrom(this.options.notebookName);
    node.appendChild(this.field(trans.__('Job name'), this.nameInput, trans.__('lower-case letters, digits and "-"')));

    const tenantNames = tenants.map(t => t.name);
    this.tenantSelect = this.select(tenants.map(t => ({ value: t.name, label: t.name })), initial?.tenant ?? tenantNames[0] ?? '', 'tenant');
    const tenantRow = this.field(trans.__('Tenant (charged to)'), this.tenantSelect);
    if (tenants.length <= 1) {
      tenantRow.style.display = 'none'; // one tenant: nothing to choose
    }
    node.appendChild(tenantRow);

    this.profileSelect = this.select([], '', 'profile');
    this.profileSummary = el('div', { class: 'aistack-RunJobForm-help aistack-RunJobForm-profileSummary' });
    const profileRow = this.field(trans.__('Profile (GPU slice)'), this.profileSelect);
    profileRow.insertBefore(this.profileSummary, profileRow.lastChild);
    node.appendChild(profileRow);

    this.kernelSelect = this.select(
      this.options.kernels.map(k => ({ value: k.name, label: k.display })),
      this.options.kernel,
      'kernel'
    );
    node.appendChild(this.field(trans.__('Kernel'), this.kernelSelect));
    this.envSelect = this.select([{ value: '', label: trans.__("The notebook's own kernel") }], '', 'environment');
    this.envSummary = el('div', { class: 'aistack-RunJobForm-help aistack-RunJobForm-envSummary' });
    this.envRow = this.field(trans.__('Environment'), this.envSelect);
    this.envRow.insertBefore(this.envSummary, this.envRow.lastChild);
    this.envRow.style.display = 'none'; // shown once the tenant's catalog lists an environment with a kernel
    this.envSelect.addEventListener('change', () => this.envChanged());
    node.appendChild(this.envRow);

    // the notebook's parameters
    const fieldset = el('fieldset', { class: 'aistack-RunJobForm-params' });
    fieldset.appendChild(el('legend', {}, trans.__('Parameters')));
    if (params.length === 0) {
      fieldset.appendChild(
        el('p', { class: 'aistack-RunJobForm-help' }, trans.__('This notebook has no cell tagged "parameters"; it runs as it is.'))
      );
    }
    for (const p of params) {
      const start = initial?.parameters && p.name in initial.parameters ? initial.parameters[p.name] : undefined;
      const input = el('input', { type: 'text', name: `param-${p.name}`, class: 'jp-mod-styled', 'data-param': p.name, 'data-type': p.type });
      input.value = start !== undefined ? (p.type === 'str' && typeof start === 'string' ? start : JSON.stringify(start)) : defaultText(p);
      input.placeholder = p.type === 'str' ? '' : defaultText(p);
      const sweep = el('input', { type: 'checkbox', name: `sweep-${p.name}`, 'data-sweep': p.name });
      const sweepLabel = el('label', { class: 'aistack-RunJobForm-sweep' });
      sweepLabel.appendChild(sweep);
      sweepLabel.appendChild(document.createTextNode(' ' + trans.__('sweep')));
      sweepLabel.title = trans.__('Run one job per value: give several values, separated by commas (one per line for text, lists and dicts)');
      const help = [p.help, trans.__('type %1, default %2', p.type, p.default)].filter(Boolean).join(' — ');
      const row = this.field(p.name, input, help);
      row.classList.add('aistack-RunJobForm-param');
      row.insertBefore(sweepLabel, row.childNodes[2] ?? null);
      sweep.addEventListener('change', () => {
        // a sweep may need several lines: swap the input for a textarea with the same id
        const f = this.paramInputs.get(p.name)!;
        const replacement = sweep.checked ? el('textarea', { rows: '3' }) : el('input', { type: 'text' });
        for (const a of ['name', 'class', 'data-param', 'data-type', 'aria-describedby', 'id']) {
          replacement.setAttribute(a, f.input.getAttribute(a) ?? '');
        }
        replacement.value = f.input.value;
        f.input.replaceWith(replacement);
        f.input = replacement;
        replacement.addEventListener('input', () => this.validate());
        this.validate();
        replacement.focus();
      });
      input.addEventListener('input', () => this.validate());
      this.paramInputs.set(p.name, { input, sweep });
      fieldset.appendChild(row);
    }
    this.sweepNote = el('div', { class: 'aistack-RunJobForm-help aistack-RunJobForm-sweepNote', 'aria-live': 'polite' });
    fieldset.appendChild(this.sweepNote);
    if (this.options.notebookPath && params.length) {
      fieldset.appendChild(this.buildExperimentPart());
    }
    node.appendChild(fieldset);

    // how it runs
    this.prioritySelect = el('select', { name: 'priority', class: 'jp-mod-styled' });
    node.appendChild(this.field(trans.__('Priority'), this.prioritySelect));
    this.timeoutInput = el('input', { type: 'number', min: '1', step: 'any', name: 'timeout', class: 'jp-mod-styled' });
    this.timeoutInput.value = defaults.timeoutMinutes ? String(defaults.timeoutMinutes) : '';
    node.appendChild(this.field(trans.__('Timeout (minutes, empty = none)'), this.timeoutInput));
    this.expectedInput = el('input', { type: 'number', min: '1', step: 'any', name: 'expected', class: 'jp-mod-styled' });
    node.appendChild(this.field(trans.__('Expected run time (minutes, optional)'), this.expectedInput,
      trans.__('tells others in the queue when this job frees its slice; empty: estimated from your past runs')));
    this.retriesInput = el('input', { type: 'number', min: '0', max: '10', step: '1', name: 'retries', class: 'jp-mod-styled' });
    this.retriesInput.value = String(defaults.retries);
    node.appendChild(this.field(trans.__('Retries'), this.retriesInput, trans.__('retried when the kernel dies or the node fails')));
    this.outputInput = el('input', { type: 'text', name: 'output', class: 'jp-mod-styled' });
    this.outputInput.value = defaults.outputLocation;
    node.appendChild(this.field(trans.__('Output folder'), this.outputInput, trans.__('where the output notebook is saved in your files')));

    for (const input of [this.nameInput, this.timeoutInput, this.expectedInput, this.retriesInput, this.outputInput]) {
      input.addEventListener('input', () => this.validate());
    }
    this.tenantSelect.addEventListener('change', () => void this.tenantChanged());
    this.profileSelect.addEventListener('change', () => this.profileChanged());
    this.updatePriorities();
    void this.tenantChanged();
  }

  /** "Run as experiment": objective metric, max/min, strategy, parallelism (and asha's budget). */
  private buildExperimentPart(): HTMLElement {
    const trans = this.options.trans;
    this.expBox = el('div', { class: 'aistack-RunJobForm-experiment' });
    this.expBox.style.display = 'none';
    const toggleLabel = el('label', { class: 'aistack-RunJobForm-experimentToggle' });
    this.expToggle = el('input', { type: 'checkbox', name: 'as-experiment' });
    toggleLabel.append(this.expToggle, document.createTextNode(' ' + trans.__('Run as experiment (search the sweep for the best value of a metric)')));
    this.expBox.appendChild(toggleLabel);
    this.expFields = el('div', { class: 'aistack-RunJobForm-experimentFields' });
    this.expMetric = el('input', { type: 'text', name: 'exp-metric', class: 'jp-mod-styled', placeholder: 'val_acc' });
    this.expFields.appendChild(this.field(trans.__('Objective metric'), this.expMetric, trans.__('a metric the notebook reports')));
    this.expMode = this.select([{ value: 'max', label: trans.__('maximize') }, { value: 'min', label: trans.__('minimize') }], 'max', 'exp-mode');
    this.expFields.appendChild(this.field(trans.__('Goal'), this.expMode));
    this.expStrategy = this.select(
      [
        { value: 'grid', label: trans.__('grid (every combination)') },
        { value: 'random', label: trans.__('random') },
        { value: 'asha', label: trans.__('asha (stops poor trials early)') }
      ],
      'grid',
      'exp-strategy'
    );
    this.expFields.appendChild(this.field(trans.__('Strategy'), this.expStrategy));
    this.expParallelism = el('input', { type: 'number', min: '1', step: '1', name: 'exp-parallelism', class: 'jp-mod-styled' });
    this.expParallelism.value = '2';
    this.expFields.appendChild(this.field(trans.__('Trials at once'), this.expParallelism));
    this.expBudgetParam = this.select(
      [{ value: '', label: trans.__('(none: the notebook reads it itself)') }, ...this.options.params.map(p => ({ value: p.name, label: p.name }))],
      this.options.params.find(p => /epoch|step|iter/i.test(p.name))?.name ?? '',
      'exp-budget-parameter'
    );
    this.expFields.appendChild(this.field(trans.__('Budget parameter'), this.expBudgetParam, trans.__('the parameter asha raises rung by rung (epochs…)')));
    this.expBudgetMax = el('input', { type: 'number', min: '1', step: '1', name: 'exp-budget-max', class: 'jp-mod-styled' });
    this.expBudgetMax.value = '9';
    this.expFields.appendChild(this.field(trans.__('Budget max'), this.expBudgetMax));
    this.expBox.appendChild(this.expFields);
    for (const input of [this.expToggle, this.expMetric, this.expMode, this.expStrategy, this.expParallelism, this.expBudgetParam, this.expBudgetMax]) {
      input.addEventListener('input', () => this.validate());
      input.addEventListener('change', () => this.validate());
    }
    return this.expBox;
  }

  /** The tenant's environments with a kernel; on any failure the field stays hidden (the notebook's kernel). */
  private async loadEnvironmentChoices(tenant: string): Promise<void> {
    let choices: IEnvironmentChoice[] = [];
    try {
      choices = environmentChoices(await (this.options.loadEnvironments ?? loadEnvironments)(tenant));
    } catch {
      choices = [];
    }
    if (tenant !== this.tenantSelect.value) {
      return; // the user picked another tenant meanwhile
    }
    const current = this.envSelect.value;
    this.envChoices = choices;
    while (this.envSelect.options.length > 1) {
      this.envSelect.remove(1);
    }
    for (const c of choices) {
      this.envSelect.appendChild(el('option', { value: c.value }, c.label));
    }
    this.envSelect.value = choices.some(c => c.value === current) ? current : '';
    this.envRow.style.display = choices.length ? '' : 'none';
    this.envChanged();
  }

  private envChanged(): void {
    const c = this.envChoices.find(x => x.value === this.envSelect.value);
    this.envSummary.textContent = c ? c.description || this.options.trans.__('runs with kernel %1', c.value) : '';
    this.kernelSelect.disabled = !!c; // the environment names the kernel
  }

  private updatePriorities(): void {
    const trans = this.options.trans;
    const tenant = this.options.tenants.find(t => t.name === this.tenantSelect.value);
    const current = this.prioritySelect.value || this.options.initial?.priority || 'normal';
    this.prioritySelect.textContent = '';
    // only the priorities the user holds a grant for: others would be refused (403) after Submit
    const opts = [{ value: 'normal', label: trans.__('normal') }];
    if (tenant?.high || tenant?.emergency) {
      opts.push({ value: 'high', label: trans.__('high') });
    }
    if (tenant?.emergency) {
      opts.push({ value: 'emergency', label: trans.__('emergency (jumps the queue)') });
    }
    for (const o of opts) {
      this.prioritySelect.appendChild(el('option', { value: o.value }, o.label));
    }
    this.prioritySelect.value = opts.some(o => o.value === current) ? current : 'normal';
  }

  /** Resolves once the profiles of the current tenant are listed. */
  readonly ready: Promise<void> = new Promise(resolve => (this.readyResolve = resolve));

  private async tenantChanged(): Promise<void> {
    this.updatePriorities();
    const trans = this.options.trans;
    this.profileSelect.disabled = true;
    this.profileSummary.textContent = trans.__('Loading profiles…');
    const environments = this.loadEnvironmentChoices(this.tenantSelect.value);
    try {
      this.profiles = await this.options.loadProfiles(this.tenantSelect.value);
    } catch (e) {
      this.profiles = [];
      this.profileSummary.textContent = trans.__('Cannot list profiles: %1', (e as Error).message);
    }
    const wanted = this.profileSelect.value || this.options.initial?.profile || this.options.defaults.profile;
    this.profileSelect.textContent = '';
    for (const p of this.profiles) {
      this.profileSelect.appendChild(el('option', { value: p.slug }, p.display_name || p.slug));
    }
    if (this.profiles.some(p => p.slug === wanted)) {
      this.profileSelect.value = wanted;
    } else {
      // the first profile that fits the quota and starts now, else the first one
      const best = this.profiles.find(p => p.fits_quota !== false && (p.free ?? 1) > 0) ?? this.profiles[0];
      this.profileSelect.value = best?.slug ?? '';
    }
    this.profileSelect.disabled = false;
    if (this.profiles.length) {
      this.profileChanged();
    }
    await environments;
    this.validate();
    this.readyResolve();
  }

  private profileChanged(): void {
    const p = this.profiles.find(x => x.slug === this.profileSelect.value);
    this.profileSummary.textContent = p ? [p.description, profileSummary(p, this.options.trans)].filter(Boolean).join(' — ') : '';
  }

  /** Called after each validation (the dialog re-checks its Submit button). */
  validated: () => void = () => undefined;
  private readyResolve!: () => void;
  private profiles: IProfileInfo[] = [];
  private nameInput!: HTMLInputElement;
  private tenantSelect!: HTMLSelectElement;
  private profileSelect!: HTMLSelectElement;
  private profileSummary!: HTMLElement;
  private kernelSelect!: HTMLSelectElement;
  private envSelect!: HTMLSelectElement;
  private envSummary!: HTMLElement;
  private envRow!: HTMLElement;
  private envChoices: IEnvironmentChoice[] = [];
  private expBox!: HTMLElement;
  private expToggle: HTMLInputElement | undefined;
  private expFields!: HTMLElement;
  private expMetric!: HTMLInputElement;
  private expMode!: HTMLSelectElement;
  private expStrategy!: HTMLSelectElement;
  private expParallelism!: HTMLInputElement;
  private expBudgetParam!: HTMLSelectElement;
  private expBudgetMax!: HTMLInputElement;
  private prioritySelect!: HTMLSelectElement;
  private timeoutInput!: HTMLInputElement;
  private expectedInput!: HTMLInputElement;
  private retriesInput!: HTMLInputElement;
  private outputInput!: HTMLInputElement;
  private sweepNote!: HTMLElement;
  private paramInputs = new Map<string, { input: HTMLInputElement | HTMLTextAreaElement; sweep: HTMLInputElement }>();
}

/** A dialog whose Submit does nothing while the form is invalid (Enter included). */
class ValidatingDialog extends Dialog<IJobRequest | null> {
  constructor(
    options: Partial<Dialog.IOptions<IJobRequest | null>>,
    private form: RunJobForm
  ) {
    super(options);
    this.buttonList = options.buttons ?? [];
    // the dialog checks validity on 'input' in the capture phase, before the form has validated:
    // check again once it has, so that Submit is disabled while a field is invalid
    form.validated = () => this._checkValidation();
  }

  resolve(index?: number): void {
    const button = this.buttonList[index ?? this.buttonList.length - 1];
    if (button?.accept && !this.form.validate(true)) {
      return;
    }
    super.resolve(index);
  }

  private buttonList: readonly Dialog.IButton[];
}

/** Show the dialog; resolves to the job request, or null when the user cancels. */
export async function showRunJobDialog(options: IDialogOptions): Promise<IJobRequest | null> {
  const trans = options.trans;
  const form = new RunJobForm(options);
  const buttons = [Dialog.cancelButton({ label: trans.__('Cancel') }), Dialog.okButton({ label: trans.__('Submit'), ariaLabel: trans.__('Submit job') })];
  const dialog = new ValidatingDialog(
    {
      title: trans.__('Run "%1" as a job', options.notebookName),
      body: form,
      buttons,
      focusNodeSelector: 'input[name="name"]'
    },
    form
  );
  dialog.addClass('aistack-RunJobDialog');
  const result = await dialog.launch();
  if (!result.button.accept) {
    return null;
  }
  if (form.asExperiment && options.notebookPath) {
    // the sweep becomes an experiment: created here, then its view opens; no job request goes back
    const body = form.experimentRequest();
    if (!body) {
      return null;
    }
    const created = await createExperiment(body, options.notebookPath, options.notebookContent);
    const id = String(created?.id ?? '');
    if (id && options.openExperiment) {
      await options.openExperiment(id);
    }
    return null;
  }
  return result.value;
}
