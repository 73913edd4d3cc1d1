// Action entry point: only calls run(). The event guard is imported first, before any module that reads the event.
import "./action/event-guard.js";
import { run } from "./action/main.js";

void run();
