// Action entry point: only calls run().
import { run } from "./action/main.js";

void run();
