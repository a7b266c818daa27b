/*
 * Sign-in for the chat page: the OAuth 2.0 authorization code flow with PKCE (RFC 7636, S256)
 * against the Cognito hosted UI that config.json names (locally: devserver/hosted_ui.py).
 *
 * Where things live, and why:
 * - the access, ID and refresh tokens: in app.js's memory only, never in localStorage or
 *   sessionStorage, so a script on another page of the origin, a browser extension reading storage
 *   or a copied profile finds none; reloading the page means signing in again (the hosted UI's own
 *   session cookie usually makes that a redirect without a form);
 * - the PKCE code_verifier and the state: in sessionStorage ("agentstream.pkce"), from the moment
 *   "Sign in" leaves for the hosted UI until the page comes back with the code (memory does not
 *   survive that redirect); removed as soon as the page reads them, before the code is redeemed.
 * Nothing here is loaded from elsewhere; the only requests are to the configured domain.
 */
(function () {
  "use strict";

  var PKCE_KEY = "agentstream.pkce";
  var SCOPE = "openid email profile";

  function base64url(bytes) {
    var text = "";
    for (var i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function randomString(size) {
    var bytes = new Uint8Array(size);
    window.crypto.getRandomValues(bytes);
    return base64url(bytes);
  }

  function challengeOf(verifier) {
    // crypto.subtle exists in secure contexts only: https:// and http://127.0.0.1 / localhost.
    return window.crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)).then(function (digest) {
      return base64url(new Uint8Array(digest));
    });
  }

  // The page's own address, without query or fragment: the app client's callback and sign-out URL.
  // Its folder, not "index.html" (the URL registered is https://<host>/, however the page was opened).
  function redirectUri() {
    return location.origin + location.pathname.replace(/index\.html$/, "");
  }

  // config.json next to the page: {wsUrl, restUrl?, cognitoDomain, clientId, region}. Without it
  // (or without a domain) the page uses a pasted token, as for the local development tokens.
  function loadConfig() {
    return fetch("config.json", { cache: "no-store", credentials: "omit" }).then(function (answer) {
      return answer.ok ? answer.json() : {};
    }).catch(function () {
      return {};
    }).then(function (config) {
      if (!config || typeof config !== "object") config = {};
      config.signIn = typeof config.cognitoDomain === "string" && config.cognitoDomain !== "" &&
        typeof config.clientId === "string" && config.clientId !== "";
      if (config.signIn) config.cognitoDomain = config.cognitoDomain.replace(/\/+$/, "");
      return config;
    });
  }

  function begin(config) {
    var verifier = randomString(48); // 64 characters
    var state = randomString(16);
    return challengeOf(verifier).then(function (challenge) {
      sessionStorage.setItem(PKCE_KEY, JSON.stringify({ verifier: verifier, state: state, redirectUri: redirectUri() }));
      var query = new URLSearchParams({
        response_type: "code",
        client_id: config.clientId,
        redirect_uri: redirectUri(),
        scope: SCOPE,
        code_challenge: challenge,
        code_challenge_method: "S256",
        state: state,
      });
      location.assign(config.cognitoDomain + "/oauth2/authorize?" + query.toString());
    });
  }

  function tokenRequest(config, fields) {
    fields.client_id = config.clientId;
    return fetch(config.cognitoDomain + "/oauth2/token", {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(fields).toString(),
      credentials: "omit",
      cache: "no-store",
    }).then(function (answer) {
      return answer.json().catch(function () { return {}; }).then(function (body) {
        if (!answer.ok || typeof body.access_token !== "string") {
          var refused = new Error("the token endpoint answered " + answer.status + (body.error ? " " + body.error : ""));
          refused.refused = true; // an answer, not a network failure
          throw refused;
        }
        return body;
      });
    });
  }

  // Back from the hosted UI: null when this load is not a return from it; otherwise a promise of
  // the tokens. The code and state leave the address bar and the verifier leaves sessionStorage
  // before anything else happens.
  function complete(config) {
    var params = new URLSearchParams(location.search);
    if (!params.has("code") && !params.has("error")) return null;
    var saved = null;
    try {
      saved = JSON.parse(sessionStorage.getItem(PKCE_KEY) || "null");
    } catch (e) {
      saved = null;
    }
    sessionStorage.removeItem(PKCE_KEY);
    try {
      history.replaceState(null, "", location.pathname + location.hash);
    } catch (e) {
      /* file:// */
    }
    if (params.has("error")) {
      return Promise.reject(new Error("the sign-in was refused: " + params.get("error") +
        (params.get("error_description") ? " (" + params.get("error_description") + ")" : "")));
    }
    if (saved === null || !saved.state || params.get("state") !== saved.state) {
      return Promise.reject(new Error("the sign-in answer does not belong to this tab (state mismatch); sign in again"));
    }
    return tokenRequest(config, {
      grant_type: "authorization_code",
      code: params.get("code"),
      redirect_uri: saved.redirectUri,
      code_verifier: saved.verifier,
    });
  }

  function refresh(config, refreshToken) {
    return tokenRequest(config, { grant_type: "refresh_token", refresh_token: refreshToken });
  }

  // Revoke the refresh token (best effort), then let the hosted UI end its own session.
  function signOut(config, refreshToken) {
    sessionStorage.removeItem(PKCE_KEY);
    var revoked = refreshToken
      ? fetch(config.cognitoDomain + "/oauth2/revoke", {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ token: refreshToken, client_id: config.clientId }).toString(),
        credentials: "omit",
      }).catch(function () { return null; })
      : Promise.resolve(null);
    return revoked.then(function () {
      var query = new URLSearchParams({ client_id: config.clientId, logout_uri: redirectUri() });
      location.assign(config.cognitoDomain + "/logout?" + query.toString());
    });
  }

  // What a token says about itself (never trusted: for the page's own display and timing).
  function claims(token) {
    try {
      var json = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(json + "===".slice((json.length + 3) % 4)));
    } catch (e) {
      return {};
    }
  }

  window.AgentSignIn = {
    loadConfig: loadConfig,
    begin: begin,
    complete: complete,
    refresh: refresh,
    signOut: signOut,
    claims: claims,
  };
})();
