/** The command that opens an experiment's view (issue 13): `aistack:open-experiment` with `{id}`, or asks. */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { ICommandPalette, InputDialog, MainAreaWidget } from '@jupyterlab/apputils';

import { ExperimentView } from './experiment';

export const OPEN_EXPERIMENT = 'aistack:open-experiment';

export function openExperimentCommand(app: JupyterFrontEnd, palette: ICommandPalette | null): void {
  app.commands.addCommand(OPEN_EXPERIMENT, {
    label: 'Open experiment',
    caption: 'Learning curves, trials and steering of an experiment',
    execute: async args => {
      let id = args.id !== undefined ? String(args.id) : '';
      if (!id) {
        const got = await InputDialog.getText({ title: 'Open experiment', label: 'Experiment id' });
        if (!got.button.accept || !got.value) return;
        id = got.value.trim();
      }
      const content = new ExperimentView(id);
      const widget = new MainAreaWidget({ content });
      widget.id = `aistack-experiment-tab-${id}`;
      widget.title.label = `Experiment ${id}`;
      widget.title.closable = true;
      content.title.changed.connect(() => (widget.title.label = content.title.label));
      app.shell.add(widget, 'main');
      app.shell.activateById(widget.id);
    }
  });
  palette?.addItem({ command: OPEN_EXPERIMENT, category: 'AIStack' });
}
