// Cross-origin isolation for multi-threaded wasm. A server that sends COOP / COEP itself needs
// nothing; otherwise coi-serviceworker.js adds the headers and the page reloads once under it.
// Without service workers (file://, plain http to a non-local host) the page runs on 1 thread.
// window.affineganIsolation resolves when the page will not reload (?nosw=1 skips all this).
window.affineganIsolation = (async () => {
  const key = 'affinegan-isolation-reload';
  const wanted = !new URLSearchParams(location.search).has('nosw');
  if (self.crossOriginIsolated || !wanted || !('serviceWorker' in navigator) || !window.isSecureContext) {
    sessionStorage.removeItem(key);
    return;
  }
  if (sessionStorage.getItem(key)) return; // reloaded once already: do not loop
  try {
    await navigator.serviceWorker.register('coi-serviceworker.js');
    await navigator.serviceWorker.ready;
  } catch (error) {
    console.warn('No service worker, running on 1 thread:', error);
    return;
  }
  sessionStorage.setItem(key, '1');
  location.reload();
  await new Promise(() => {}); // the reload replaces this page
})();
