/** Requests to the server extension (`{base_url}aistack-lab/...`), which forwards to the aistack service. */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** An error answer: the service's (or the server extension's) `{error, message}`. */
export class AistackError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string
  ) {
    super(message);
  }
}

export async function requestAPI<T = any>(endpoint: string, init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'aistack-lab', endpoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new AistackError(0, 'network', String(error));
  }
  const text = await response.text();
  let data: any = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    const message = (data && (data.message || data.error)) || response.statusText || `HTTP ${response.status}`;
    throw new AistackError(response.status, (data && data.error) || 'error', message);
  }
  return data as T;
}

/** Bytes of a job's log from `offset` on (the service reads at most 1 MiB per call). */
export async function fetchLogBytes(jobId: string, offset: number): Promise<Uint8Array> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'aistack-lab', 'api', 'jobs', jobId, 'logs') + `?offset=${offset}`;
  const response = await ServerConnection.makeRequest(url, {}, settings);
  if (!response.ok) {
    let message = response.statusText;
    try {
      message = (await response.json()).message ?? message;
    } catch {
      // not JSON: keep the status text
    }
    throw new AistackError(response.status, 'error', message);
  }
  return new Uint8Array(await response.arrayBuffer());
}

export const api = {
  get: <T = any>(path: string) => requestAPI<T>(`api/${path}`),
  post: <T = any>(path: string, body: unknown = {}) =>
    requestAPI<T>(`api/${path}`, { method: 'POST', body: JSON.stringify(body) }),
  /** Submit the notebook (saved at `path`, or its unsaved `content`) with the job fields. */
  submit: (body: Record<string, unknown>) => requestAPI<any>('jobs', { method: 'POST', body: JSON.stringify(body) }),
  inspect: (path: string, content?: unknown) =>
    requestAPI<any>('inspect', { method: 'POST', body: JSON.stringify({ path, content }) }),
  openOutput: (jobId: string, directory: string) =>
    requestAPI<{ path: string }>(`jobs/${jobId}/open-output`, {
      method: 'POST',
      body: JSON.stringify({ directory })
    })
};

/** Every environment of the tenant (`GET environments?tenant=T`, following `next_offset`, 10 pages at most). */
export async function loadEnvironments(tenant: string): Promise<{ items: any[] }> {
  const items: any[] = [];
  let offset: number | null = 0;
  for (let page = 0; page < 10 && offset !== null; page++) {
    const q: string[] = tenant ? [`tenant=${encodeURIComponent(tenant)}`] : [];
    if (offset) {
      q.push(`offset=${offset}`);
    }
    const res: any = await api.get(`environments${q.length ? '?' + q.join('&') : ''}`);
    items.push(...(Array.isArray(res?.items) ? res.items : []));
    offset = typeof res?.next_offset === 'number' && res.next_offset > offset ? res.next_offset : null;
  }
  return { items };
}

/**
 * POST experiments with the notebook attached: the unsaved `content` when given, else the saved file at
 * `path` read through this server's contents API (the service may not see this server's files).
 */
export async function createExperiment(body: Record<string, unknown>, path: string, content?: unknown): Promise<any> {
  let notebook = content;
  if (notebook === undefined || notebook === null) {
    const settings = ServerConnection.makeSettings();
    const url = URLExt.join(settings.baseUrl, 'api', 'contents', URLExt.encodeParts(path)) + '?type=notebook&content=1';
    const response = await ServerConnection.makeRequest(url, {}, settings);
    if (!response.ok) {
      throw new AistackError(response.status, 'bad_notebook', `cannot read ${path}: ${response.statusText}`);
    }
    notebook = (await response.json()).content;
  }
  const out: Record<string, unknown> = { ...body, notebook };
  if (path.replace(/^\/+|\/+$/g, '')) {
    out.notebook_path = path.replace(/^\/+|\/+$/g, '');
  }
  return api.post('experiments', out);
}
