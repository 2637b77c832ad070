// Client pages: local times in the browser's zone, slider values, the device check. No libraries.
(function () {
  "use strict";

  // Times: shown in the client's stored zone by the server; otherwise in the browser's zone, named.
  var start = document.getElementById("start");
  if (start && start.dataset.zoneFixed === "no" && window.Intl) {
    var lang = document.documentElement.lang || "en";
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone) {
      var when = new Date(start.getAttribute("datetime"));
      start.textContent = new Intl.DateTimeFormat(lang, { dateStyle: "full", timeStyle: "short", timeZone: zone }).format(when);
      var named = new Intl.DateTimeFormat(lang, { timeZone: zone, timeZoneName: "long" }).formatToParts(when)
        .filter(function (p) { return p.type === "timeZoneName"; });
      document.getElementById("zone").textContent = (named.length ? named[0].value + ", " : "") + zone;
      document.querySelectorAll("time[data-time-only]").forEach(function (t) {
        t.textContent = new Intl.DateTimeFormat(lang, { timeStyle: "short", timeZone: zone }).format(new Date(t.getAttribute("datetime")));
      });
    }
  }

  // A Join button that is not open yet: reload the page when it opens (the server decides).
  var waiting = document.querySelector("#join[data-opens]");
  if (waiting) {
    var wait = new Date(waiting.dataset.opens).getTime() - Date.now() + 1000;
    if (wait > 0 && wait < 24 * 3600 * 1000) { window.setTimeout(function () { window.location.reload(); }, wait); }
  }

  // Sliders: show the value with one decimal next to each.
  document.querySelectorAll("input[type=range]").forEach(function (input) {
    var out = document.getElementById(input.id + "-value");
    var show = function () { out.textContent = Number(input.value).toFixed(1); };
    input.addEventListener("input", show);
    show();
  });

  // Device check: camera + microphone permission, a level meter, a round trip and a small download.
  var box = document.getElementById("device-check");
  if (!box) { return; }
  box.hidden = false;
  var msg = box.dataset;
  var mediaStatus = document.getElementById("media-status");
  var netStatus = document.getElementById("net-status");
  var meter = document.getElementById("level");

  document.getElementById("check-media").addEventListener("click", function () {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) { mediaStatus.textContent = msg.msgUnsupported; return; }
    navigator.mediaDevices.getUserMedia({ audio: true, video: true }).then(function (stream) {
      document.getElementById("preview").srcObject = stream;
      var Ctx = window.AudioContext || window.webkitAudioContext;
      var ctx = new Ctx();
      var analyser = ctx.createAnalyser();
      analyser.fftSize = 512;
      ctx.createMediaStreamSource(stream).connect(analyser);
      var samples = new Uint8Array(analyser.fftSize);
      var tick = function () {
        analyser.getByteTimeDomainData(samples);
        var peak = 0;
        for (var i = 0; i < samples.length; i++) { peak = Math.max(peak, Math.abs(samples[i] - 128) / 128); }
        meter.value = peak;
        box.dataset.level = peak.toFixed(3);
        window.requestAnimationFrame(tick);
      };
      tick();
      mediaStatus.textContent = msg.msgOk;
      box.dataset.media = "ok";
    }).catch(function (err) {
      mediaStatus.textContent = err && err.name === "NotAllowedError" ? msg.msgDenied : msg.msgFailed;
      box.dataset.media = "failed";
    });
  });

  document.getElementById("check-net").addEventListener("click", function () {
    var url = msg.ping;
    var get = function (u) { return fetch(u, { cache: "no-store" }).then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.arrayBuffer(); }); };
    var rtts = [];
    var round = function (n) {
      var t0 = performance.now();
      return get(url).then(function () { rtts.push(performance.now() - t0); return n > 1 ? round(n - 1) : null; });
    };
    netStatus.textContent = "…";
    round(5).then(function () {
      var t0 = performance.now();
      return get(url + "?size=64k").then(function (body) { return body.byteLength * 8 / ((performance.now() - t0) / 1000) / 1e6; });
    }).then(function (mbps) {
      rtts.sort(function (a, b) { return a - b; });
      var rtt = Math.round(rtts[Math.floor(rtts.length / 2)]);
      var good = rtt < 300;
      netStatus.textContent = (good ? msg.msgNetGood : msg.msgNetSlow) + " (" + msg.msgRtt + " " + rtt + " ms, ~" + mbps.toFixed(1) + " Mbit/s)";
      box.dataset.net = good ? "good" : "slow";
    }).catch(function () { netStatus.textContent = msg.msgNetFail; box.dataset.net = "failed"; });
  });
})();
