// The tool's version, kept equal to package.json's by a test.
export const TOOL_NAME = "quantgate";
export const TOOL_VERSION = "0.1.0";
export const REPORT_SCHEMA = "quantgate.report/v2";
