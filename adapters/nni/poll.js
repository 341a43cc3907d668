// facenas: how often NNI's manager looks for ended trials and submits queued ones.
//
// NNI 3.0's manager checks its trials, and submits the trials waiting for a free slot, every 0.5 s
// on the local and remote training services (`pollInterval` in its compiled TypeScript, also the
// period of its pings to the dispatcher), with no option to change it. Each round of dependent
// trials (a pipeline step waiting for the previous one) waits for that poll, so a pipeline of short
// trials spends much of its time there. facenas launchers load this file into the manager
// (NODE_OPTIONS="--require <this file>"); once NNI's NNIManager class is loaded, its trial loop uses
// FACENAS_NNI_POLL_S seconds instead (default 0.1; 0 keeps NNI's). A poll reads trial states the
// training service keeps in memory, so polling more often costs little. Only an interval NNI itself
// set to 0.5 s or less is lowered (the other services poll remote APIs every 5 s: left alone), and
// a manager without that method or field is left as it is.
'use strict';
const Module = require('module');

const raw = process.env.FACENAS_NNI_POLL_S;
const seconds = raw === undefined || raw === '' ? 0.1 : Number(raw);

if (Number.isFinite(seconds) && seconds > 0) {
  const originalLoad = Module._load;
  Module._load = function loadAndTune(...args) {
    const exported = originalLoad.apply(this, args);
    const Manager = exported && exported.NNIManager;
    if (typeof Manager === 'function' && typeof Manager.prototype.manageTrials === 'function') {
      Module._load = originalLoad;  // one class to tune: stop looking
      const manageTrials = Manager.prototype.manageTrials;
      Manager.prototype.manageTrials = function manageTrialsPolled(...callArgs) {
        if (typeof this.pollInterval === 'number' && this.pollInterval <= 0.5 && this.pollInterval > seconds) {
          this.pollInterval = seconds;
        }
        return manageTrials.apply(this, callArgs);
      };
    }
    return exported;
  };
}
