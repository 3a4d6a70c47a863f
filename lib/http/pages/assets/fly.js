// The fly delivery page (lib/http/pages): hands the CLI its login on its local port. The sky CLI's
// listener answers with CORS headers, so its refusal (a 400) is seen and the code is shown to paste,
// and its verdict after redeeming the code (a 403 with its reason: not in the team) is shown as such;
// Concourse's fly may not, so its token goes in a no-cors request whose answer is opaque.
// data-target: the listener's URL with the query; data-mode: cors or no-cors; data-port; data-timeout (ms).
(function () {
  var data = document.currentScript.dataset;
  var done = false;
  function $(id) {
    return document.getElementById(id);
  }
  function finish(title, detail) {
    if (done) return;
    done = true;
    $('status').textContent = title;
    $('detail').textContent = detail;
  }
  function manual() {
    if (done) return;
    finish(
      'Paste this into your terminal',
      'Your browser did not let this page reach the CLI on port ' + data.port + '.',
    );
    $('manual').hidden = false;
    $('handover').focus();
    $('handover').select();
  }
  $('copy').addEventListener('click', function () {
    var text = $('handover').value;
    function fallback() {
      $('handover').select();
      var ok;
      try {
        ok = document.execCommand('copy');
      } catch {
        ok = false;
      }
      $('copied').textContent = ok ? 'Copied.' : 'Select the text and copy it (Ctrl+C or ⌘C).';
    }
    if (navigator.clipboard) {
      navigator.clipboard.writeText(text).then(function () {
        $('copied').textContent = 'Copied.';
      }, fallback);
    } else {
      fallback();
    }
  });
  // Gives up on the CLI's port after data-timeout: a listener that never answers must not hide the code.
  var abort = new AbortController();
  var timer = setTimeout(function () {
    abort.abort();
  }, Number(data.timeout));
  fetch(data.target, { mode: data.mode, signal: abort.signal, referrerPolicy: 'no-referrer' })
    .then(function (r) {
      clearTimeout(timer);
      if (r.status === 403) {
        return r.text().then(function (reason) {
          finish('You are not logged in', reason.trim());
          $('card').className = 'card error';
        });
      }
      if (r.type !== 'opaque' && !r.ok) {
        manual();
        return;
      }
      if (done) return;
      finish(
        'You are logged in',
        'The CLI has your login. Return to your terminal; you may close this window.',
      );
      $('card').className = 'card done';
      $('done-icon').hidden = false;
    })
    .catch(function () {
      clearTimeout(timer);
      manual();
    });
})();
