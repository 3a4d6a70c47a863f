// The landing page (lib/http/pages): keeps the CSRF token for guarded unsafe API calls in
// sessionStorage (the csrf cookie is HttpOnly), drops `csrf_token` from the address bar so it is never
// bookmarked, and checks access with the API on a click. data-api: the API's path on this origin.
(function () {
  var api = document.currentScript.dataset.api;
  var form = document.getElementById('logout');
  try {
    sessionStorage.setItem('sky.csrf_token', form.elements.namedItem('csrf_token').value);
  } catch {
    // Storage refused (private mode): guarded changes then ask for the token again.
  }
  var url = new URL(location.href);
  if (url.searchParams.has('csrf_token')) {
    url.searchParams.delete('csrf_token');
    history.replaceState(history.state, '', url.pathname + url.search + url.hash);
  }
  var out = document.getElementById('api-result');
  function say(text, tone) {
    out.textContent = text;
    out.className = 'status ' + tone;
  }
  document.getElementById('check-api').addEventListener('click', function () {
    say('Asking the API…', '');
    fetch(api, { credentials: 'same-origin', headers: { accept: 'application/json' } })
      .then(function (r) {
        if (!r.ok)
          throw new Error(
            r.status === 401
              ? 'You are not logged in any more: log in again.'
              : 'The API answered ' + r.status + '.',
          );
        return r.json();
      })
      .then(function (u) {
        var teams = Object.keys(u.teams)
          .sort()
          .map(function (t) {
            return t + ' (' + u.teams[t].join(', ') + ')';
          });
        say(
          'The API knows you as ' +
            (u.display_user_id || u.user_id) +
            (teams.length ? ': ' + teams.join(', ') + '.' : ', with no team.'),
          'ok',
        );
      })
      .catch(function (e) {
        say('The API refused: ' + e.message, 'bad');
      });
  });
})();
