// The page: log in if the server wants a key, then three views (chat, models, server).

import { auth, json, Unauthorized } from "./api.js";
import { ChatView } from "./chat.js";
import { ModelsView } from "./models.js";
import { ServerView } from "./server.js";

const $ = (id) => document.getElementById(id);
const views = {};
let active = null;

async function start() {
  auth.onUnauthorized = showLogin;
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", () => {
    auth.key = "";
    showLogin();
  });
  for (const button of document.querySelectorAll("#nav button")) {
    button.addEventListener("click", () => select(button.dataset.view));
  }
  try {
    const version = await json("GET", "/api/version");
    $("status").textContent = `v${version.llmport}`;
  } catch (error) {
    if (!(error instanceof Unauthorized)) $("status").textContent = String(error.message);
    return;
  }
  enter();
}

async function enter() {
  $("login").hidden = true;
  $("nav").hidden = false;
  $("logout").hidden = !auth.key;
  views.chat ||= new ChatView($("view-chat"));
  views.models ||= new ModelsView($("view-models"));
  views.server ||= new ServerView($("view-server"));
  views.server.start(); // Plots need history: scrape from the start, whatever the view.
  await select(location.hash.slice(1) in views ? location.hash.slice(1) : "chat");
  document.body.dataset.ready = "yes"; // The first view shows the server's data.
  if (!performance.getEntriesByName("llmport-ready").length) performance.mark("llmport-ready");
}

function showLogin() {
  for (const view of Object.values(views)) view.stop?.();
  for (const section of document.querySelectorAll(".view")) section.hidden = true;
  $("nav").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-key").focus();
  document.body.dataset.ready = "login";
}

async function login(event) {
  event.preventDefault();
  auth.key = $("login-key").value;
  try {
    await json("GET", "/api/version");
  } catch (error) {
    auth.key = "";
    $("login-error").textContent = error instanceof Unauthorized ? "Wrong key." : String(error.message);
    return;
  }
  $("login-error").textContent = "";
  $("login-key").value = "";
  enter();
}

async function select(name) {
  active = name;
  history.replaceState(null, "", `#${name}`);
  for (const button of document.querySelectorAll("#nav button")) {
    button.classList.toggle("active", button.dataset.view === name);
  }
  for (const [key, view] of Object.entries(views)) view.root.hidden = key !== name;
  try {
    await views[name].show();
  } catch (error) {
    if (!(error instanceof Unauthorized) && active === name) $("status").textContent = String(error.message);
  }
}

start();
